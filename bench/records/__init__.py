"""Run records on disk (one JSON row and one curves file per run) and the tidy tables merged
from them (``runs.parquet``, ``curves.parquet``): derived data, always rebuildable."""
