"""Scores against tuned Adam (``normalise``), statistics over seeds (``stats``) and the one
per-optimizer summary of a runs table (``summary``)."""
