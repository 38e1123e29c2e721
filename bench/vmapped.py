"""Several seeds of one run trained as one compiled program (``sweep.vmap_seeds=true``).

On small tasks a step is mostly dispatch and compilation, so seeds that differ only in their
seed train together: ``vmap`` over seeds of a ``lax.scan`` over steps, one compile for all.
Each seed gets its own initial parameters, data order and status (one diverging seed stops
only its own curve) and its own row and curves, equal to a sequential run's up to float
rounding. What is not per seed is time: the rows are throughput-only, so their step-time
columns stay empty; ``train_time_s`` and ``compile_time_s`` are the group's, and
``throughput_steps_per_s`` is the group's seed-steps per second of training.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from bench import memory
from bench.runner import RunResult, RunSettings, _chunk_bounds, _gather
from bench.timing import Stopwatch
from tasks.base import Task, num_params


def _train_chunk(task: Task, tx: optax.GradientTransformationExtraArgs):
    """(params, opt_state, batches) -> (params, opt_state, losses): one seed's scanned steps."""

    def step(carry, batch):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(task.loss)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params, value=loss)
        return (optax.apply_updates(params, updates), opt_state), loss

    def chunk(params, opt_state, batches):
        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), batches)
        return params, opt_state, losses

    return chunk


def _evaluate(eval_loss, params, task: Task) -> np.ndarray:
    """Per seed: mean loss over the whole evaluation split, batches weighted by size."""
    total, count = 0.0, 0
    for batch in task.eval_batches():
        n = len(next(iter(batch.values())))
        total = total + np.asarray(eval_loss(params, batch), np.float64) * n
        count += n
    return total / count


def _stacked_batches(iterators, count: int, pool: ThreadPoolExecutor) -> dict[str, np.ndarray]:
    """``count`` batches from each seed's iterator: arrays of shape [seeds, count, ...].

    Drawing a shuffled batch is a random-row gather, bound by memory latency (about 40 us for
    128 rows of a 15 MB array); NumPy releases the GIL while it copies, so seeds are drawn on
    several threads, each iterator by one thread at a time and in its own order.
    """
    per_seed = list(pool.map(lambda it: _gather(it, count), iterators))
    return {k: np.stack([np.stack(g[k]) for g in per_seed]) for k in per_seed[0]}


def run_seeds(task: Task, tx: optax.GradientTransformationExtraArgs, settings: RunSettings,
              seeds: Sequence[int]) -> list[RunResult]:
    """Train ``tx`` on ``task`` once per seed, all seeds in one program; one result per seed."""
    if settings.steps < 1:
        raise ValueError("sweep.vmap_seeds=true needs run.steps >= 1 (it trains; "
                         "timing-only runs are measured one by one)")
    memory.reset_peak_rss()
    n = len(seeds)
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    param_shapes = jax.eval_shape(task.init, keys[0])
    common: dict[str, Any] = {
        "steps": settings.steps, "num_params": num_params(task),
        "param_bytes": memory.tree_bytes(param_shapes), "batch_size": task.batch_size,
        **memory.state_summary(tx.init, param_shapes), "vmapped_seeds": n,
    }
    chunk = jax.jit(jax.vmap(_train_chunk(task, tx)), donate_argnums=(0, 1))
    eval_loss = jax.jit(jax.vmap(task.loss, in_axes=(0, None)))
    # The initialiser compiled once, unbatched, and called per seed: run eagerly, every batched
    # primitive would compile apart, and the batched program compiles about twice as long.
    init = jax.jit(task.init)
    params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[init(k) for k in keys])
    opt_state = jax.tree.map(jnp.copy, jax.jit(jax.vmap(tx.init))(params))  # a buffer per leaf
    iterators = [task.train_batches(s) for s in seeds]
    compiled: dict[int, Any] = {}
    compile_s, train_clock, eval_clock = 0.0, Stopwatch(), Stopwatch()
    losses: list[np.ndarray] = []  # [seeds, chunk] per chunk
    walls: list[np.ndarray] = []
    evals: list[tuple[int, np.ndarray, float]] = []
    stopped = np.full(n, -1)  # per seed: the step it diverged at, or -1
    limit = np.full(n, np.inf)
    with eval_clock:
        evals.append((0, _evaluate(eval_loss, params, task), 0.0))
    with ThreadPoolExecutor(max_workers=min(n, os.cpu_count() or 1)) as pool:  # draws batches
        for start, end in _chunk_bounds(settings.steps, settings.chunk_steps, settings.eval_every):
            batches = _stacked_batches(iterators, end - start, pool)
            if end - start not in compiled:
                began = time.perf_counter()
                compiled[end - start] = chunk.lower(params, opt_state, batches).compile()
                compile_s += time.perf_counter() - began
            with train_clock:
                before = train_clock.total
                params, opt_state, chunk_losses = compiled[end - start](params, opt_state, batches)
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
                    evals.append((end, _evaluate(eval_loss, params, task), train_clock.total))
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
