"""Meta-training: gradient estimators (PES, truncated ES) over the training of tasks drawn from
a family, and an outer loop that turns them into meta-parameter checkpoints for
``optimizers.learned``."""
