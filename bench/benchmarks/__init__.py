"""Speed benchmarks outside sweeps (``make bench``): each optimizer's update cost against its
floor (``update_cost``), and seed throughput (``seed_throughput``)."""
