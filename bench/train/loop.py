"""The one training loop: train an optimizer on a task for one seed or several seeds at once.

Training runs in chunks of ``chunk_steps`` steps per compiled call (``lax.scan``), each chunk
compiled off the training clock; the loss of every step is kept. The whole evaluation split is
evaluated on a schedule, off the training clock. A seed whose loss turns non-finite or blows
up stops its own curve (status ``diverged``); the others go on. A single run is the one-seed
case: the program holds one seed, and its row and curves come from the same code as those of
seeds trained together.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from bench.measure.timing import Stopwatch
from bench.train.feed import Feed, evaluator
from bench.train.settings import SEED_BATCHINGS, RunSettings
from bench.train.steps import compiled_unoptimised, own_buffers, train_chunk
from tasks.base import Task

CURVE_COLUMNS = ["step", "split", "loss", "wall_time_s"]


def resolve_batching(setting: str, seeds: int, backend: str | None = None) -> str:
    """``sweep.seed_batching``: how one program holds ``seeds`` seeds.

    ``vmap`` batches every operation over seeds; ``unroll`` repeats the step once per seed in
    the scan's body, so each seed's operations stay unbatched and independent (one seed is
    always unrolled: a plain scan). ``auto`` picks by measurement: unroll on CPU, where
    XLA:CPU's batched matrix products are slower than one product per seed, vmap on
    accelerators.
    """
    if setting not in SEED_BATCHINGS:
        raise ValueError(f"sweep.seed_batching={setting!r}: expected one of "
                         f"{', '.join(SEED_BATCHINGS)}")
    if seeds == 1:
        return "unroll"
    if setting != "auto":
        return setting
    return "unroll" if (backend or jax.default_backend()) == "cpu" else "vmap"


def chunk_bounds(steps: int, chunk: int, eval_every: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) step ranges that end at every evaluation point."""
    stops = sorted(set(range(chunk, steps, chunk)) | set(range(eval_every, steps, eval_every)))
    ends = [*stops, steps]
    return list(zip([0, *ends[:-1]], ends))


@dataclass(frozen=True)
class Trained:
    """What training gave one seed: its status, summary columns and curves."""

    status: str
    summary: dict[str, Any]
    curves: pd.DataFrame


def _initial_carry(task: Task, tx: optax.GradientTransformation, seeds: Sequence[int],
                   batching: str) -> Any:
    """Every seed's initial (params, opt_state); the initialisers compile once, unbatched, and
    run per seed (a batched initialiser compiles about twice as long)."""
    init = compiled_unoptimised(task.init, jax.random.key(seeds[0]))
    params = [init(jax.random.key(seed)) for seed in seeds]
    state_init = compiled_unoptimised(tx.init, params[0])
    carry = [(p, own_buffers(state_init(p))) for p in params]
    if batching == "vmap":
        return jax.tree.map(lambda *xs: jnp.stack(xs), *carry)
    return carry


def train(task: Task, tx: optax.GradientTransformationExtraArgs, settings: RunSettings,
          seeds: Sequence[int], batching: str = "auto") -> tuple[list[Trained], dict[str, Any]]:
    """Train ``tx`` on ``task`` once per seed, all seeds in one program.

    Returns one ``Trained`` per seed and the columns that belong to the program as a whole
    (compile and training time, seed-steps per second).
    """
    if settings.steps < 1:
        raise ValueError(f"run.steps={settings.steps}: training needs at least one step")
    batching = resolve_batching(batching, len(seeds))
    n = len(seeds)
    chunk = jax.jit(train_chunk(task, tx, batching), donate_argnums=0)
    carry = _initial_carry(task, tx, seeds, batching)
    evaluate = evaluator(task, batching)

    def params_of(carry):
        return carry[0] if batching == "vmap" else [params for params, _ in carry]

    feed = Feed(task, seeds)
    compiled: dict[int, Any] = {}
    compile_s, train_clock, eval_clock = 0.0, Stopwatch(), Stopwatch()
    losses: list[np.ndarray] = []  # [seeds, chunk] per chunk
    walls: list[np.ndarray] = []
    evals: list[tuple[int, dict[str, np.ndarray], float]] = []
    stopped = np.full(n, -1)  # per seed: the step it diverged at, or -1
    limit = np.full(n, np.inf)
    with eval_clock:
        evals.append((0, evaluate(params_of(carry)), 0.0))
    try:
        for start, end in chunk_bounds(settings.steps, settings.chunk_steps, settings.eval_every):
            xs = feed.chunk(end - start, batching)
            if end - start not in compiled:  # compile off the training clock
                began = time.perf_counter()
                compiled[end - start] = chunk.lower(carry, xs, feed.data).compile()
                compile_s += time.perf_counter() - began
            with train_clock:
                before = train_clock.total
                carry, chunk_losses = compiled[end - start](carry, xs, feed.data)
                chunk_losses = np.asarray(jax.block_until_ready(chunk_losses))
            elapsed = train_clock.total - before
            if start == 0:  # a NaN first loss is caught below
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
                    evals.append((end, evaluate(params_of(carry)), train_clock.total))
    finally:
        feed.close()
    all_losses, all_walls = np.concatenate(losses, axis=1), np.concatenate(walls)
    program = {"compile_time_s": compile_s, "train_time_s": train_clock.total,
               "eval_time_s": eval_clock.total,
               "throughput_steps_per_s": all_losses.size / max(train_clock.total, 1e-12)}
    return [_seed_outcome(i, all_losses[i], all_walls, evals, int(stopped[i]))
            for i in range(n)], program


def _seed_outcome(i: int, losses: np.ndarray, walls: np.ndarray,
                  evals: list[tuple[int, dict[str, np.ndarray], float]],
                  stopped: int) -> Trained:
    """Seed ``i``'s summary and curves, its curve cut after the step it diverged at."""
    diverged = stopped >= 0
    if diverged:
        losses, walls = losses[: stopped + 1], walls[: stopped + 1]
        evals = [e for e in evals if e[0] <= stopped]
    tail = max(1, len(losses) // 10)
    eval_losses = [float(values["loss"][i]) for _, values, _ in evals]
    accuracies = np.array([float(values["accuracy"][i]) if "accuracy" in values else np.nan
                           for _, values, _ in evals])
    nan = float("nan")
    summary = {
        "steps_completed": len(losses) - 1 if diverged else len(losses),
        "first_train_loss": float(losses[0]),
        "final_train_loss": float(np.mean(losses[-tail:])),
        "last_train_loss": float(losses[-1]),
        "final_eval_loss": nan if diverged else eval_losses[-1],
        "best_eval_loss": float(np.nanmin(eval_losses)),
        "final_eval_accuracy": nan if diverged else float(accuracies[-1]),
        "best_eval_accuracy": nan if np.isnan(accuracies).all() else float(
            np.nanmax(accuracies)),
    }
    curves = pd.concat([
        pd.DataFrame({"step": np.arange(len(losses)), "split": "train",
                      "loss": losses.astype(np.float64), "wall_time_s": walls}),
        pd.DataFrame({"step": [e[0] for e in evals], "split": "eval", "loss": eval_losses,
                      "wall_time_s": [e[2] for e in evals]}),
    ], ignore_index=True)[CURVE_COLUMNS]
    return Trained("diverged" if diverged else "ok", summary, curves)
