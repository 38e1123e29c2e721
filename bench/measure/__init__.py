"""Everything that produces a measured column: timing, memory, XLA's costs and loop traffic,
hardware facts, and a run's costs measured without training (``run_costs``)."""
