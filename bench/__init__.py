"""The measurement harness: one run, its measurements, the records and the sweep over runs."""
