"""The outer loop of meta-training: estimates from every inner problem averaged into one
meta-gradient, clipped, applied with Adam under a warmup + cosine schedule, with periodic
evaluation on held-out seeds, exact resumption and a tidy curve table.

Recipe defaults follow the reference launcher for small_fc_lopt (REFERENCE.md): PES, truncation
30, inner length 2,000 with random initial offsets, 4 tasks per estimate, Adam with gradient
clipping at 3.0; the number of outer steps is this machine's budget, not the paper's 100k.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pyarrow.parquet as pq

from optimizers.meta.estimators import Estimator, MakeOptimizer, Particles, train_steps
from optimizers.meta.problems import InnerProblem
from optimizers.meta.state_io import load_tree, replace_atomically, save_tree

CURVE_COLUMNS = ("outer_step", "meta_loss", "eval_loss", "gradient_norm", "learning_rate",
                 "wall_time_s")
EVAL_SEED_BASE = 1_000_000  # evaluation seeds: far from the 0, 1, 2, ... that sweeps use


@dataclasses.dataclass(frozen=True)
class OuterSettings:
    steps: int = 1000
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    clip: float = 3.0               # each meta-gradient component clipped to [-clip, clip]
    eval_every: int = 100
    eval_steps: int = 2000
    eval_seeds: int = 3
    checkpoint_every: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "eval_every", "eval_steps", "eval_seeds", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"outer.{name}={getattr(self, name)}: must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError(f"outer.learning_rate={self.learning_rate}: must be positive")


class MetaState(NamedTuple):
    theta: Any
    outer_state: Any
    particles: tuple[Particles, ...]
    best_theta: Any
    best_eval: jax.Array


def outer_optimizer(settings: OuterSettings) -> tuple[optax.GradientTransformation,
                                                        optax.Schedule]:
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, settings.learning_rate, min(settings.warmup_steps, settings.steps - 1) or 1,
        settings.steps, end_value=settings.learning_rate * 0.1)
    return optax.chain(optax.clip(settings.clip), optax.adam(schedule)), schedule


def make_evaluation(problem: InnerProblem, make_optimizer: MakeOptimizer, steps: int,
                    seeds: int) -> Callable[[Any], jax.Array]:
    """``evaluate(theta)``: mean over held-out seeds of the final training loss (the mean of the
    last 10% of steps, as the sweep's final_train_loss) after ``steps`` inner steps."""
    tail = max(1, steps // 10)

    def one_seed(theta, seed):
        key_init, key_data = jax.random.split(jax.random.key(EVAL_SEED_BASE + seed))
        optimizer = make_optimizer(theta)
        params = problem.init(key_init)
        keys = jax.random.split(key_data, steps)
        _, _, losses = train_steps(problem, optimizer, params, optimizer.init(params), keys)
        return jnp.mean(losses[-tail:])

    def evaluate(theta):
        return jnp.mean(jax.vmap(lambda s: one_seed(theta, s))(jnp.arange(seeds)))

    return jax.jit(evaluate)


def _finite_or(value: jax.Array, fallback: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else fallback


class Progress:
    """One line every ``every`` outer steps: meta-loss, last evaluation, speed and time left."""

    def __init__(self, total: int, start: int, stream: TextIO = sys.stdout, every: int = 10):
        self.total, self.start, self.stream, self.every = total, start, stream, every
        self.clock = time.perf_counter()

    def __call__(self, row: dict[str, float], last_eval: float) -> None:
        step = int(row["outer_step"])
        if step % self.every and step != self.total:
            return
        rate = (step - self.start) / max(time.perf_counter() - self.clock, 1e-9)
        left = (self.total - step) / rate if rate > 0 else float("nan")
        print(f"outer step {step}/{self.total}  meta-loss {row['meta_loss']:.4f}  "
              f"eval {last_eval:.4f}  {rate:.2f} steps/s  ~{left / 60:.1f} min left",
              file=self.stream, flush=True)


def meta_train(
    theta: Any,
    estimators: Sequence[Estimator],
    evaluate: Callable[[Any], jax.Array],
    settings: OuterSettings,
    folder: Path,
    stream: TextIO = sys.stdout,
    stop_after: int | None = None,
) -> tuple[MetaState, pd.DataFrame]:
    """Meta-train ``theta`` with the average of ``estimators``; resumes from
    ``folder/state.npz`` if it exists. ``stop_after`` ends early after that many outer steps
    in total (used to test resumption); returns the state and the outer curve."""
    folder.mkdir(parents=True, exist_ok=True)
    optimizer, schedule = outer_optimizer(settings)
    base = jax.random.key(settings.seed)
    fresh = MetaState(
        theta=theta,
        outer_state=optimizer.init(theta),
        particles=tuple(est.init(theta, jax.random.fold_in(jax.random.fold_in(base, 1), i))
                        for i, est in enumerate(estimators)),
        best_theta=theta,
        best_eval=jnp.asarray(jnp.inf, jnp.float32),
    )
    state, start, wall, rows = fresh, 0, 0.0, []
    state_path, curve_path = folder / "state.npz", folder / "curve.parquet"
    if state_path.exists():
        state, header = load_tree(state_path, fresh)
        start, wall = header["outer_step"], header["wall_time_s"]
        if curve_path.exists():
            curve = pq.read_table(str(curve_path)).to_pandas()  # a path: no IO threads
            rows = curve[curve["outer_step"] <= start].to_dict("records")
        print(f"resuming meta-training at outer step {start}/{settings.steps}", file=stream)

    @jax.jit
    def apply(theta, outer_state, gradient):
        updates, outer_state = optimizer.update(gradient, outer_state, theta)
        return optax.apply_updates(theta, updates), outer_state, optax.tree.norm(gradient)

    def save(step: int) -> None:
        curve = pd.DataFrame(rows, columns=list(CURVE_COLUMNS))
        replace_atomically(curve_path, lambda tmp: curve.to_parquet(tmp, index=False))
        save_tree(state_path, state, {"outer_step": step, "wall_time_s": wall})

    last_eval = float("nan")
    if start == 0:
        last_eval = float(evaluate(state.theta))
        state = state._replace(best_eval=jnp.asarray(_finite_or(last_eval, math.inf), jnp.float32),
                               best_theta=state.theta)
        rows.append(_row(0, float("nan"), last_eval, 0.0, 0.0, wall))
    progress = Progress(settings.steps, start, stream)
    end = settings.steps if stop_after is None else min(stop_after, settings.steps)
    for step in range(start + 1, end + 1):
        tick = time.perf_counter()
        key = jax.random.fold_in(jax.random.fold_in(base, 2), step)
        gradients, particles, meta_losses = [], [], []
        for i, (est, part) in enumerate(zip(estimators, state.particles)):
            gradient, part, metrics = est.estimate(state.theta, part, jax.random.fold_in(key, i))
            gradients.append(gradient)
            particles.append(part)
            meta_losses.append(metrics["meta_loss"])
        gradient = jax.tree.map(lambda *g: sum(g) / len(g), *gradients)
        theta, outer_state, norm = apply(state.theta, state.outer_state, gradient)
        state = state._replace(theta=theta, outer_state=outer_state, particles=tuple(particles))
        meta_loss = float(np.mean([float(m) for m in meta_losses]))
        evaluation = float("nan")
        if step % settings.eval_every == 0 or step == settings.steps:
            evaluation = last_eval = float(evaluate(state.theta))
            if _finite_or(evaluation, math.inf) < float(state.best_eval):
                state = state._replace(best_theta=state.theta,
                                       best_eval=jnp.asarray(evaluation, jnp.float32))
        wall += time.perf_counter() - tick
        rows.append(_row(step, meta_loss, evaluation, float(norm), float(schedule(step - 1)),
                         wall))
        progress(rows[-1], last_eval)
        if step % settings.checkpoint_every == 0 or step == end:
            save(step)
    if start >= end:
        save(start)
    return state, pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def _row(step: int, meta_loss: float, eval_loss: float, norm: float, lr: float,
         wall: float) -> dict[str, float]:
    return dict(zip(CURVE_COLUMNS, (step, meta_loss, eval_loss, norm, lr, wall)))
