"""Training problems: a Task bundles a model's init and loss with seeded, deterministic data."""

from tasks.base import Batch, Task, num_params

__all__ = ["Batch", "Task", "num_params"]
