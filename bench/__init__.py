"""The measurement harness, in rooms that follow the chain task -> optimizer -> run -> record
-> figure: ``measure`` (what a column is measured with), ``train`` (one run: its costs, the
training loop, its row), ``sweep`` (presets planned into runs and executed), ``records`` (rows
on disk and the tidy tables), ``analysis`` (scores and statistics), ``figures``, and
``benchmarks`` (speed benchmarks outside sweeps)."""
