"""Meta-training: gradient estimators (PES, truncated ES) over a family of inner problems and
an outer loop that turns them into meta-parameter checkpoints for ``optimizers.learned``."""
