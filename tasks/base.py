"""The Task contract every training problem follows.

A task is plain data plus pure functions: ``init(key) -> params``, ``loss(params, batch) ->
scalar``, a seeded deterministic iterator of training batches (numpy arrays), the evaluation
split, and an abstract batch (shapes and dtypes only) so that timing-only runs need no data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

Batch = Mapping[str, np.ndarray]
Params = Any


@dataclass(frozen=True)
class Task:
    """A training problem.

    Attributes:
      name: short identifier used in records and plots.
      family: group of related tasks (recorded in every row as ``task_family``).
      batch_size: training batch size.
      init: ``init(key) -> params``.
      loss: ``loss(params, batch) -> scalar`` mean loss over the batch; jit-friendly.
      train_batches: ``train_batches(seed)`` yields training batches forever, the same
        sequence for the same seed.
      eval_batches: ``eval_batches()`` yields the evaluation split once, in a fixed order.
      abstract_batch: a pytree of ``jax.ShapeDtypeStruct`` shaped like one training batch.
      metrics: optional ``metrics(params, batch) -> {name: scalar}``, batch means evaluated
        beside the loss (``{"accuracy": ...}`` for classifiers).
      num_classes: number of classes for a classification loss (losses are clipped at
        1.5 * ln(num_classes) when normalised); None for other losses.
      data_fingerprint: a digest of the contents of the data files the task read (part of a
        run's identity, so that other data is another run); None for data generated from the
        task's settings alone.
      train_arrays: the training split, where ``train_batches(seed)`` is
        ``shuffled_batches(train_arrays, batch_size, seed)``; a runner may then keep the
        arrays on the device and gather each batch there at ``shuffled_indices`` (the same
        rows in the same order) instead of copying batches in from the host. None otherwise.
    """

    name: str
    family: str
    batch_size: int
    init: Callable[[jax.Array], Params]
    loss: Callable[[Params, Batch], jax.Array]
    train_batches: Callable[[int], Iterator[Batch]]
    eval_batches: Callable[[], Iterator[Batch]]
    abstract_batch: Mapping[str, jax.ShapeDtypeStruct]
    metrics: Callable[[Params, Batch], Mapping[str, jax.Array]] | None = None
    num_classes: int | None = None
    data_fingerprint: str | None = None
    # Arrays: neither compared (NumPy's == is elementwise) nor printed in a Task's repr.
    train_arrays: Mapping[str, np.ndarray] | None = field(default=None, compare=False,
                                                          repr=False)


def num_params(task: Task) -> int:
    """Number of scalar parameters of the task's model, without allocating them."""
    shapes = jax.eval_shape(task.init, jax.random.key(0))
    return int(sum(np.prod(leaf.shape, dtype=np.int64) for leaf in jax.tree.leaves(shapes)))


def num_examples(arrays: Mapping[str, np.ndarray]) -> int:
    """The common first dimension of ``arrays``; a ValueError if they disagree."""
    sizes = {len(a) for a in arrays.values()}
    if len(sizes) != 1:
        raise ValueError(f"arrays disagree on their first dimension: {sorted(sizes)}")
    return sizes.pop()


def shuffled_indices(num: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Yield the row indices of each batch forever: one fresh permutation of ``num`` rows per
    epoch, drawn from ``seed``.

    The remainder of each epoch that does not fill a batch is dropped so that every batch
    has the same shape (one compiled step serves them all).
    """
    if batch_size > num:
        raise ValueError(f"batch_size={batch_size} exceeds the {num} examples available")
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(num).astype(np.int32)
        for start in range(0, num - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def shuffled_batches(
    arrays: Mapping[str, np.ndarray], batch_size: int, seed: int
) -> Iterator[dict[str, np.ndarray]]:
    """Yield batches forever: the rows of ``arrays`` at ``shuffled_indices``."""
    for idx in shuffled_indices(num_examples(arrays), batch_size, seed):
        yield {k: a[idx] for k, a in arrays.items()}


def sequential_batches(
    arrays: Mapping[str, np.ndarray], batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """Yield the arrays once, in order, in batches of at most ``batch_size`` (the last may be
    smaller)."""
    n = len(next(iter(arrays.values())))
    for start in range(0, n, batch_size):
        yield {k: a[start : start + batch_size] for k, a in arrays.items()}


def check_positive(**values: int) -> None:
    """Raise a ValueError naming every setting that is not a positive integer."""
    bad = {k: v for k, v in values.items()
           if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1}
    if bad:
        raise ValueError(", ".join(f"{k}={v!r}" for k, v in bad.items())
                         + ": must be positive integers")
