"""The outer loop of meta-training: estimates from a few of the family's tasks averaged into one
meta-gradient, clipped, applied with Adam under a warmup + cosine schedule, with periodic
evaluation on held-out tasks, exact resumption and tidy curve tables.

Recipe defaults follow the reference launcher for small_fc_lopt (REFERENCE.md): PES, truncation
30, inner length 2,000 with random initial offsets, 4 tasks per estimate, Adam with gradient
clipping at 3.0; the number of outer steps is this machine's budget, not the paper's 100k.

Each outer step draws ``tasks_per_step`` of the estimators (one per task: tasks of different
shapes cannot share one vmapped program) without replacement, in proportion to their weights,
from a stream seeded by the step, so a resumed run draws the same tasks. Their estimates are
averaged, or with ``balance="unit"`` each is first scaled to unit norm: per-task meta-losses of
different sensitivity (a log-loss autoencoder's estimates are several times a classifier's)
then have an equal say in the direction. Besides the full state
(``state.npz``, particles included: an exact resume), a ``mirror`` folder can keep a small
portable copy (meta-parameters, outer optimizer state, curves) that a fresh machine resumes
from with fresh particles.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pyarrow.parquet as pq

from optimizers.meta.estimators import Estimator, MakeOptimizer, Particles
from optimizers.meta.inner import device_sampler, train_steps
from optimizers.meta.state_io import load_tree, replace_atomically, save_tree
from tasks.base import Task

CURVE_COLUMNS = ("outer_step", "meta_loss", "eval_loss", "gradient_norm", "learning_rate",
                 "wall_time_s")
EVALUATION_COLUMNS = ("outer_step", "task", "eval_loss")
EVAL_SEED_BASE = 1_000_000  # evaluation seeds: far from the 0, 1, 2, ... that sweeps use
Evaluate = Callable[[Any], Mapping[str, float]]
BALANCES = ("mean", "unit")


@dataclasses.dataclass(frozen=True)
class OuterSettings:
    steps: int = 1000
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    clip: float = 3.0               # each meta-gradient component clipped to [-clip, clip]
    tasks_per_step: int | None = None  # estimators drawn per outer step; None: all of them
    balance: str = "mean"           # how tasks' estimates combine: "mean", or "unit" (each
                                    # scaled to unit norm first, so no task's sensitivity rules)
    eval_every: int = 100
    eval_steps: int = 2000
    eval_seeds: int = 3
    checkpoint_every: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "eval_every", "eval_steps", "eval_seeds", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"outer.{name}={getattr(self, name)}: must be at least 1")
        if self.tasks_per_step is not None and self.tasks_per_step < 1:
            raise ValueError(f"outer.tasks_per_step={self.tasks_per_step}: must be at least 1 "
                             "(or null for every task)")
        if not self.learning_rate > 0:
            raise ValueError(f"outer.learning_rate={self.learning_rate}: must be positive")
        if self.balance not in BALANCES:
            raise ValueError(f"outer.balance={self.balance!r}: expected one of {BALANCES}")


class MetaState(NamedTuple):
    theta: Any
    outer_state: Any
    particles: tuple[Particles, ...]
    best_theta: Any
    best_eval: jax.Array


class PortableState(NamedTuple):
    """What a fresh machine needs to carry meta-training on: everything but the particles."""

    theta: Any
    outer_state: Any
    best_theta: Any
    best_eval: jax.Array


def outer_optimizer(settings: OuterSettings) -> tuple[optax.GradientTransformation,
                                                        optax.Schedule]:
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, settings.learning_rate, min(settings.warmup_steps, settings.steps - 1) or 1,
        settings.steps, end_value=settings.learning_rate * 0.1)
    return optax.chain(optax.clip(settings.clip), optax.adam(schedule)), schedule


def outer_apply(optimizer: optax.GradientTransformation) -> Callable[..., tuple]:
    """``apply(theta, outer_state, gradient) -> (theta, outer_state, gradient norm)``: one
    compiled outer update."""
    @jax.jit
    def apply(theta, outer_state, gradient):
        updates, outer_state = optimizer.update(gradient, outer_state, theta)
        return optax.apply_updates(theta, updates), outer_state, optax.tree.norm(gradient)

    return apply


def make_evaluation(task: Task, make_optimizer: MakeOptimizer, steps: int,
                    seeds: int) -> Callable[[Any], jax.Array]:
    """``evaluate(theta)``: mean over held-out seeds of the final training loss (the mean of the
    last 10% of steps, as the sweep's final_train_loss) after ``steps`` inner steps."""
    tail = max(1, steps // 10)
    sample = device_sampler(task)

    def one_seed(theta, seed):
        key_init, key_data = jax.random.split(jax.random.key(EVAL_SEED_BASE + seed))
        optimizer = make_optimizer(theta)
        params = task.init(key_init)
        keys = jax.random.split(key_data, steps)
        _, _, losses = train_steps(task, sample, optimizer, params, optimizer.init(params), keys)
        return jnp.mean(losses[-tail:])

    def evaluate(theta):
        return jnp.mean(jax.vmap(lambda s: one_seed(theta, s))(jnp.arange(seeds)))

    return jax.jit(evaluate)


def evaluate_tasks(tasks: Sequence[Task], make_optimizer: MakeOptimizer, steps: int,
                   seeds: int) -> Evaluate:
    """``evaluate(theta) -> {task name: final training loss}`` over held-out ``tasks``."""
    each = {task.name: make_evaluation(task, make_optimizer, steps, seeds) for task in tasks}
    return lambda theta: {name: float(evaluate(theta)) for name, evaluate in each.items()}


def score(losses: Mapping[str, float]) -> float:
    """One number per evaluation that no task's scale dominates: the geometric mean of the
    tasks' final losses (inf if any is not finite or not positive); with one task, its loss."""
    values = np.asarray(list(losses.values()), np.float64)
    if not values.size or not np.all(np.isfinite(values) & (values > 0)):
        return math.inf
    return float(np.exp(np.mean(np.log(values))))


def draw_tasks(count: int | None, weights: Sequence[float], seed: int, step: int) -> list[int]:
    """Indices of the estimators used at outer ``step``: ``count`` of them (all if None or
    more than there are) drawn without replacement in proportion to ``weights``."""
    total = len(weights)
    if count is None or count >= total:
        return list(range(total))
    probabilities = np.asarray(weights, np.float64) / np.sum(weights)
    rng = np.random.default_rng([seed, step, 0x7A5C])
    return sorted(int(i) for i in rng.choice(total, size=count, replace=False, p=probabilities))


def combined_estimate(estimators: Sequence[Estimator], theta: Any,
                      particles: Sequence[Particles], chosen: Sequence[int], key: jax.Array,
                      balance: str = "mean") -> tuple[Any, tuple[Particles, ...], jax.Array]:
    """One outer step's meta-gradient: the ``chosen`` estimators' estimates (each with its own
    key folded from ``key``) combined as ``balance`` says; returns it, every estimator's
    particles (the chosen ones advanced) and the chosen tasks' mean meta-loss."""
    gradients, particles, meta_losses = [], list(particles), []
    for i in chosen:
        gradient, particles[i], metrics = estimators[i].estimate(
            theta, particles[i], jax.random.fold_in(key, i))
        gradients.append(gradient)
        meta_losses.append(metrics["meta_loss"])
    if balance == "unit":
        gradients = [_unit(g) for g in gradients]
    gradient = jax.tree.map(lambda *g: sum(g) / len(g), *gradients)
    return gradient, tuple(particles), jnp.mean(jnp.stack(meta_losses))


class Progress:
    """A line at most every ``seconds`` (and at the end): outer step, meta-loss, last
    evaluation, the speed since the previous line (compiles excluded once warm) and time left."""

    def __init__(self, total: int, start: int, stream: TextIO = sys.stdout,
                 seconds: float = 10.0):
        self.total, self.stream, self.seconds = total, stream, seconds
        self.last_step, self.last_time = start, time.perf_counter()

    def __call__(self, row: dict[str, float], last_eval: float) -> None:
        step, now = int(row["outer_step"]), time.perf_counter()
        if now - self.last_time < self.seconds and step != self.total:
            return
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        left = (self.total - step) / rate if rate > 0 else float("nan")
        self.last_step, self.last_time = step, now
        print(f"outer step {step}/{self.total}  meta-loss {row['meta_loss']:.4f}  "
              f"eval {last_eval:.4f}  {rate:.2f} steps/s  ~{left / 60:.1f} min left",
              file=self.stream, flush=True)


def meta_train(
    theta: Any,
    estimators: Sequence[Estimator],
    evaluate: Evaluate,
    settings: OuterSettings,
    folder: Path,
    stream: TextIO = sys.stdout,
    stop_after: int | None = None,
    weights: Sequence[float] | None = None,
    mirror: Path | None = None,
) -> tuple[MetaState, pd.DataFrame]:
    """Meta-train ``theta`` with ``estimators`` (drawn per step in proportion to ``weights``,
    equal by default); resumes from ``folder/state.npz`` if it exists, else from
    ``mirror/resume.npz`` with fresh particles. ``evaluate`` gives held-out tasks' final losses;
    the best ``score`` so far is kept. ``stop_after`` ends early after that many outer steps in
    total. Returns the state and the outer curve (per-task evaluations in
    ``folder/evaluations.parquet``)."""
    weights = [1.0] * len(estimators) if weights is None else [float(w) for w in weights]
    if len(weights) != len(estimators) or not all(w > 0 for w in weights):
        raise ValueError(f"weights={weights}: need one positive weight per task "
                         f"({len(estimators)} tasks)")
    tasks = [est.task for est in estimators]
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
    state, start, wall, rows, evaluations = fresh, 0, 0.0, [], []
    exact = (folder / "state.npz").exists()
    source = folder if exact else mirror
    if exact or (mirror is not None and (mirror / "resume.npz").exists()):
        state, start, wall = _resume(source, exact, fresh, tasks)
        rows = _rows(source / "curve.parquet", start)
        evaluations = _rows(source / "evaluations.parquet", start)
        print(f"resuming meta-training at outer step {start}/{settings.steps} from "
              f"{source}{'' if exact else ' (fresh particles)'}", file=stream)

    apply = outer_apply(optimizer)

    def save(step: int) -> None:
        header = {"outer_step": step, "wall_time_s": wall, "tasks": tasks}
        for target in [folder] if mirror is None else [folder, mirror]:
            _write_tables(target, rows, evaluations)
        save_tree(folder / "state.npz", state, header)
        if mirror is not None:
            portable = PortableState(state.theta, state.outer_state, state.best_theta,
                                     state.best_eval)
            save_tree(mirror / "resume.npz", portable, header)

    def run_evaluation(step: int) -> float:
        losses = evaluate(state.theta)
        evaluations.extend(dict(zip(EVALUATION_COLUMNS, (step, name, loss)))
                           for name, loss in losses.items())
        return score(losses)

    last_eval = float("nan")
    if start == 0:
        last_eval = run_evaluation(0)
        state = state._replace(best_eval=jnp.asarray(last_eval, jnp.float32),
                               best_theta=state.theta)
        rows.append(_row(0, float("nan"), last_eval, 0.0, 0.0, wall))
    progress = Progress(settings.steps, start, stream)
    end = settings.steps if stop_after is None else min(stop_after, settings.steps)
    for step in range(start + 1, end + 1):
        tick = time.perf_counter()
        key = jax.random.fold_in(jax.random.fold_in(base, 2), step)
        chosen = draw_tasks(settings.tasks_per_step, weights, settings.seed, step)
        gradient, particles, meta_loss = combined_estimate(
            estimators, state.theta, state.particles, chosen, key, settings.balance)
        theta, outer_state, norm = apply(state.theta, state.outer_state, gradient)
        state = state._replace(theta=theta, outer_state=outer_state, particles=particles)
        meta_loss = float(meta_loss)
        evaluation = float("nan")
        if step % settings.eval_every == 0 or step == settings.steps:
            evaluation = last_eval = run_evaluation(step)
            if evaluation < float(state.best_eval):
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


def _unit(tree: Any) -> Any:
    """``tree`` divided by its global norm (zero stays zero)."""
    norm = optax.tree.norm(tree)
    return jax.tree.map(lambda x: x / (norm + 1e-12), tree)


def _resume(source: Path, exact: bool, fresh: MetaState,
            tasks: list[str]) -> tuple[MetaState, int, float]:
    """The state saved in ``source`` (the full one if ``exact``, else the portable one with
    ``fresh``'s particles), its outer step and wall time."""
    if exact:
        state, header = load_tree(source / "state.npz", fresh)
    else:
        like = PortableState(fresh.theta, fresh.outer_state, fresh.best_theta, fresh.best_eval)
        portable, header = load_tree(source / "resume.npz", like)
        state = fresh._replace(**portable._asdict())
    if header.get("tasks", tasks) != tasks:
        raise ValueError(f"{source}: saved by a meta-training over tasks {header['tasks']}, "
                         f"not {tasks}; use another name or delete it")
    return state, header["outer_step"], header["wall_time_s"]


def _rows(path: Path, last_step: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    table = pq.read_table(str(path)).to_pandas()  # a path: no IO threads
    return table[table["outer_step"] <= last_step].to_dict("records")


def _write_tables(folder: Path, rows: list[dict], evaluations: list[dict]) -> None:
    for name, records, columns in (("curve", rows, CURVE_COLUMNS),
                                   ("evaluations", evaluations, EVALUATION_COLUMNS)):
        table = pd.DataFrame(records, columns=list(columns))
        replace_atomically(folder / f"{name}.parquet",
                           lambda tmp, table=table: table.to_parquet(tmp, index=False))


def _row(step: int, meta_loss: float, eval_loss: float, norm: float, lr: float,
         wall: float) -> dict[str, float]:
    return dict(zip(CURVE_COLUMNS, (step, meta_loss, eval_loss, norm, lr, wall)))
