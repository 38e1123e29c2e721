"""Several seeds of one run trained as one compiled program (``sweep.vmap_seeds=true``).

On small tasks a run is mostly process start, compilation and dispatch, so seeds that differ
only in their seed train together: one ``lax.scan`` over steps holding every seed (batched
with ``vmap``, or unrolled seed by seed: ``resolve_batching``), one compile for all, the
training data on the device and gathered there.
Each seed gets its own initial parameters, data order and status (one diverging seed stops
only its own curve) and its own row and curves, equal to a sequential run's up to float
rounding. What is not per seed is time: the rows are throughput-only, so their step-time
columns stay empty; ``train_time_s`` and ``compile_time_s`` are the group's, and
``throughput_steps_per_s`` is the group's seed-steps per second of training.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from bench import memory
from bench.runner import (
    RunResult,
    RunSettings,
    _chunk_bounds,
    _gather,
    _own_buffers,
    compiled_unoptimised,
)
from bench.sweep_settings import SEED_BATCHINGS
from bench.timing import Stopwatch
from tasks.base import Task, num_examples, num_params, shuffled_indices


def resolve_batching(setting: str, backend: str | None = None) -> str:
    """``sweep.seed_batching``: how one program holds several seeds.

    ``vmap`` batches every operation over seeds; ``unroll`` repeats the step once per seed in
    the scan's body, so each seed's operations stay unbatched and independent. ``auto`` picks
    by measurement: unroll on CPU, where XLA:CPU's batched matrix products are slow (eight
    seeds of the standard task on 2 cores: 42-57 us per seed-step unrolled against 64-93 us
    vmapped, in runs a few minutes apart; the unrolled program compiles in about 1.5 s
    against 1.0 s), vmap on accelerators.
    """
    if setting not in SEED_BATCHINGS:
        raise ValueError(f"sweep.seed_batching={setting!r}: expected one of "
                         f"{', '.join(SEED_BATCHINGS)}")
    if setting != "auto":
        return setting
    return "unroll" if (backend or jax.default_backend()) == "cpu" else "vmap"


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _batch(xs: Any, data: dict[str, jax.Array] | None) -> Any:
    """One step's batch: ``xs`` itself, or the rows ``xs`` of the device-resident ``data``."""
    if data is None:
        return xs
    return {k: a.at[xs].get(mode="promise_in_bounds", unique_indices=True)
            for k, a in data.items()}


def _train_chunk(task: Task, tx: optax.GradientTransformationExtraArgs, batching: str):
    """``(carry, xs, data) -> (carry, losses)``: scanned steps of every seed; losses come back
    as [seeds, steps], ``xs`` are batches or row indices into ``data``.

    ``vmap``: the carry is (params, opt_state) with a leading seed axis, xs [seeds, steps, ...].
    ``unroll``: the carry is a list of one (params, opt_state) per seed, xs a list of one
    [steps, ...] per seed (kept apart: slicing one stacked array per seed and step makes the
    program slower to compile).
    """

    def step(carry, xs, data):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(task.loss)(params, _batch(xs, data))
        updates, opt_state = tx.update(grads, opt_state, params, value=loss)
        return (optax.apply_updates(params, updates), opt_state), loss

    if batching == "vmap":
        def one_seed(carry, xs, data):
            return jax.lax.scan(lambda c, x: step(c, x, data), carry, xs)

        return jax.vmap(one_seed, in_axes=(0, 0, None))

    def chunk(carries, xs, data):
        def body(carries, x):
            out = [step(carry, x_seed, data) for carry, x_seed in zip(carries, x)]
            return [o[0] for o in out], jnp.stack([o[1] for o in out])

        carries, losses = jax.lax.scan(body, carries, xs)
        return carries, losses.T

    return chunk


def _evaluate(losses: Callable[[Any], Any], task: Task) -> np.ndarray:
    """Per seed: mean loss over the whole evaluation split, batches weighted by size;
    ``losses(batch)`` gives every seed's loss on one batch."""
    total, count = 0.0, 0
    for batch in task.eval_batches():
        n = len(next(iter(batch.values())))
        total = total + np.asarray(losses(batch), np.float64) * n
        count += n
    return total / count


def _batches(iterators, count: int, pool: ThreadPoolExecutor) -> list[dict[str, np.ndarray]]:
    """``count`` batches from each seed's iterator: per seed, arrays of shape [count, ...].

    Drawing a shuffled batch is a random-row gather, bound by memory latency (about 40 us for
    128 rows of a 15 MB array); NumPy releases the GIL while it copies, so seeds are drawn on
    several threads, each iterator by one thread at a time and in its own order.
    """
    per_seed = pool.map(lambda it: _gather(it, count), iterators)
    return [{k: np.stack(v) for k, v in grouped.items()} for grouped in per_seed]


def _stack_host(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *xs: np.stack(xs), *trees)


class _Feed:
    """Each seed's training batches, chunk by chunk.

    Where the task names its training arrays (``Task.train_arrays``), they go to the device
    once and a chunk is only the row indices of its batches (per seed, [steps, batch]
    integers): the program gathers the rows itself, the same rows in the same order as the
    task's own iterator. Otherwise the batches are drawn on the host, seeds on a thread pool.
    """

    def __init__(self, task: Task, seeds: Sequence[int]):
        self.data = None
        if task.train_arrays is not None:
            self.data = {k: jnp.asarray(v) for k, v in task.train_arrays.items()}
            num = num_examples(task.train_arrays)
            self.indices = [shuffled_indices(num, task.batch_size, s) for s in seeds]
        else:
            self.iterators = [task.train_batches(s) for s in seeds]
            self.pool = ThreadPoolExecutor(max_workers=min(len(seeds), os.cpu_count() or 1))

    def chunk(self, count: int, batching: str) -> Any:
        """The next ``count`` steps' inputs, laid out as ``_train_chunk(..., batching)`` takes
        them."""
        if self.data is not None:
            per_seed = [np.stack([next(it) for _ in range(count)]) for it in self.indices]
        else:
            per_seed = _batches(self.iterators, count, self.pool)
        return _stack_host(per_seed) if batching == "vmap" else per_seed

    def close(self) -> None:
        if self.data is None:
            self.pool.shutdown()


def run_seeds(task: Task, tx: optax.GradientTransformationExtraArgs, settings: RunSettings,
              seeds: Sequence[int], batching: str = "auto") -> list[RunResult]:
    """Train ``tx`` on ``task`` once per seed, all seeds in one program; one result per seed.
    ``batching`` says how the program holds the seeds (``resolve_batching``)."""
    batching = resolve_batching(batching)
    if settings.steps < 1:
        raise ValueError("sweep.vmap_seeds=true needs run.steps >= 1 (it trains; "
                         "timing-only runs are measured one by one)")
    memory.reset_peak_rss()
    n = len(seeds)
    param_shapes = jax.eval_shape(task.init, jax.random.key(seeds[0]))
    common: dict[str, Any] = {
        "steps": settings.steps, "num_params": num_params(task),
        "param_bytes": memory.tree_bytes(param_shapes), "batch_size": task.batch_size,
        **memory.state_summary(tx.init, param_shapes), "vmapped_seeds": n,
        "seed_batching": batching,
    }
    chunk = jax.jit(_train_chunk(task, tx, batching), donate_argnums=0)
    eval_loss = jax.jit(jax.vmap(task.loss, in_axes=(0, None)) if batching == "vmap"
                        else task.loss)
    # The initialisers compiled once, unbatched, and called per seed (a batched initialiser
    # compiles about twice as long).
    init = compiled_unoptimised(task.init, jax.random.key(seeds[0]))
    carry: Any = [init(jax.random.key(seed)) for seed in seeds]
    state_init = compiled_unoptimised(tx.init, carry[0])
    carry = [(params, _own_buffers(state_init(params))) for params in carry]
    if batching == "vmap":
        carry = _stack(carry)

    def seed_losses(batch):  # unrolled seeds are evaluated one by one: one small compile
        if batching == "vmap":
            return eval_loss(carry[0], batch)
        return np.stack([eval_loss(params, batch) for params, _ in carry])

    feed = _Feed(task, seeds)
    compiled: dict[int, Any] = {}
    compile_s, train_clock, eval_clock = 0.0, Stopwatch(), Stopwatch()
    losses: list[np.ndarray] = []  # [seeds, chunk] per chunk
    walls: list[np.ndarray] = []
    evals: list[tuple[int, np.ndarray, float]] = []
    stopped = np.full(n, -1)  # per seed: the step it diverged at, or -1
    limit = np.full(n, np.inf)
    with eval_clock:
        evals.append((0, _evaluate(seed_losses, task), 0.0))
    try:
        for start, end in _chunk_bounds(settings.steps, settings.chunk_steps, settings.eval_every):
            xs = feed.chunk(end - start, batching)
            if end - start not in compiled:
                began = time.perf_counter()
                compiled[end - start] = chunk.lower(carry, xs, feed.data).compile()
                compile_s += time.perf_counter() - began
            with train_clock:
                before = train_clock.total
                carry, chunk_losses = compiled[end - start](carry, xs, feed.data)
                chunk_losses = np.asarray(jax.block_until_ready(chunk_losses))
            elapsed = train_clock.total - before
            if start == 0:
                limit = settings.divergence_factor * np.abs(chunk_losses[:, 0])
            bad = ~np.isfinite(chunk_losses) | (chunk_losses > limit[:, None])
            first_bad = np.where(bad.any(axis=1), bad.argmax(axis=1) + start, -1)
            stopped = np.where((stopped < 0) & (first_bad >= 0), first_bad, stopped)
            losses.append(chunk_losses)
            walls.append(before + elapsed * np.arange(1, end - start + 1) / (end - start))
            if (stopped >= 0).all():
                break
            if end % settings.eval_every == 0 or end == settings.steps:
                with eval_clock:
                    evals.append((end, _evaluate(seed_losses, task),
                                  train_clock.total))
    finally:
        feed.close()
    all_losses, all_walls = np.concatenate(losses, axis=1), np.concatenate(walls)
    peaks = {"peak_rss_bytes": memory.peak_rss_bytes(),
             "peak_device_bytes": memory.peak_device_bytes(),
             "nvml_used_bytes": memory.nvml_used_bytes()}
    group = {"compile_time_s": compile_s, "train_time_s": train_clock.total,
             "eval_time_s": eval_clock.total,
             "throughput_steps_per_s": all_losses.size / max(train_clock.total, 1e-12)}
    return [_seed_result(i, all_losses[i], all_walls, evals, int(stopped[i]),
                         {**common, **group, **peaks}) for i in range(n)]


def _seed_result(i: int, losses: np.ndarray, walls: np.ndarray,
                 evals: list[tuple[int, np.ndarray, float]], stopped: int,
                 summary: dict[str, Any]) -> RunResult:
    """Seed ``i``'s row and curves, its curve cut after the step it diverged at."""
    diverged = stopped >= 0
    if diverged:
        losses, walls = losses[: stopped + 1], walls[: stopped + 1]
        evals = [e for e in evals if e[0] <= stopped]
    tail = max(1, len(losses) // 10)
    eval_values = [float(loss[i]) for _, loss, _ in evals]
    summary = {
        **summary,
        "steps_completed": len(losses) - 1 if diverged else len(losses),
        "final_train_loss": float(np.mean(losses[-tail:])),
        "last_train_loss": float(losses[-1]),
        "final_eval_loss": float("nan") if diverged else eval_values[-1],
        "best_eval_loss": float(np.nanmin(eval_values)),
    }
    curves = pd.concat([
        pd.DataFrame({"step": np.arange(len(losses)), "split": "train",
                      "loss": losses.astype(np.float64), "wall_time_s": walls}),
        pd.DataFrame({"step": [e[0] for e in evals], "split": "eval", "loss": eval_values,
                      "wall_time_s": [e[2] for e in evals]}),
    ], ignore_index=True)[["step", "split", "loss", "wall_time_s"]]
    return RunResult("diverged" if diverged else "ok", summary, curves)
