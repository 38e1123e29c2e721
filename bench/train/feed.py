"""Each seed's training batches, a chunk of steps at a time, and the evaluation of every seed
over the whole evaluation split."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tasks.base import Task, num_examples, shuffled_indices


def gather(batches: Iterator[dict[str, np.ndarray]], count: int) -> dict[str, np.ndarray]:
    """The next ``count`` batches of an iterator, stacked per field: [count, ...]."""
    grouped: dict[str, list[np.ndarray]] = {}
    for _ in range(count):
        for key, value in next(batches).items():
            grouped.setdefault(key, []).append(value)
    return {k: np.stack(v) for k, v in grouped.items()}


def _stack_host(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *xs: np.stack(xs), *trees)


class Feed:
    """Each seed's training batches, chunk by chunk.

    Where the task names its training arrays (``Task.train_arrays``), they go to the device
    once and a chunk is only the row indices of its batches (per seed, [steps, batch]
    integers): the program gathers the rows itself, the same rows in the same order as the
    task's own iterator. Otherwise the batches are drawn on the host; several seeds on a thread
    pool (a shuffled batch is a latency-bound random-row gather, and NumPy releases the GIL
    while it copies), each iterator by one thread at a time and in its own order.
    """

    def __init__(self, task: Task, seeds: Sequence[int]):
        self.data: dict[str, jax.Array] | None = None
        self.pool: ThreadPoolExecutor | None = None
        if task.train_arrays is not None:
            self.data = {k: jnp.asarray(v) for k, v in task.train_arrays.items()}
            num = num_examples(task.train_arrays)
            self.indices = [shuffled_indices(num, task.batch_size, s) for s in seeds]
        else:
            self.iterators = [task.train_batches(s) for s in seeds]
            if len(seeds) > 1:
                self.pool = ThreadPoolExecutor(max_workers=min(len(seeds), os.cpu_count() or 1))

    def chunk(self, count: int, batching: str) -> Any:
        """The next ``count`` steps' inputs, laid out as ``train_chunk(..., batching)`` takes
        them."""
        if self.data is not None:
            per_seed = [np.stack([next(it) for _ in range(count)]) for it in self.indices]
        elif self.pool is not None:
            per_seed = list(self.pool.map(lambda it: gather(it, count), self.iterators))
        else:
            per_seed = [gather(it, count) for it in self.iterators]
        return _stack_host(per_seed) if batching == "vmap" else per_seed

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def evaluator(task: Task, batching: str) -> Callable[[Any], dict[str, np.ndarray]]:
    """``evaluate(params) -> {name: [seeds] means}``: the loss and the task's metrics (if any)
    of every seed over the whole evaluation split, batches weighted by size. ``params`` is a
    list of one tree per seed (``unroll``, evaluated one by one: one small compile) or one tree
    with a leading seed axis (``vmap``)."""

    def one(params, batch):
        extra = task.metrics(params, batch) if task.metrics is not None else {}
        return {**extra, "loss": task.loss(params, batch)}

    if batching == "vmap":
        batched = jax.jit(jax.vmap(one, in_axes=(0, None)))

        def on_batch(params, batch):
            return {k: np.asarray(v, np.float64) for k, v in batched(params, batch).items()}
    else:
        single = jax.jit(one)

        def on_batch(params, batch):
            values = [single(p, batch) for p in params]
            return {k: np.array([float(v[k]) for v in values]) for k in values[0]}

    def evaluate(params) -> dict[str, np.ndarray]:
        totals: dict[str, np.ndarray] = {}
        count = 0
        for batch in task.eval_batches():
            n = len(next(iter(batch.values())))
            for name, value in on_batch(params, batch).items():
                totals[name] = totals.get(name, 0.0) + value * n
            count += n
        return {name: total / count for name, total in totals.items()}

    return evaluate
