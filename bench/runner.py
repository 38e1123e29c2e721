"""One run: train an optimizer on a task and measure what it costs and what it buys.

The protocol (DESIGN.md, "Run"):
  1. Compile the fused step, the gradient and the update ahead of time; compile time is
     recorded apart and never counted in a step time.
  2. Time steady-state calls of each (device synchronised after every call, buffers donated).
  3. Train for ``steps`` steps in blocks of ``chunk_steps`` steps per compiled call (lax.scan),
     recording the training loss of every step; evaluate the full evaluation split on a
     schedule, off the training clock.
  4. Stop early with status ``diverged`` when the loss turns non-finite or blows up.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from bench import memory
from bench.cost import compiled_costs
from bench.timing import Stopwatch, summarize, time_interleaved
from tasks.base import Task, num_params

# The reference step for overhead ratios: plain SGD (its learning rate does not change its cost).
SGD_REFERENCE_LR = 1e-3


@dataclass(frozen=True)
class RunSettings:
    """How long to train and how to measure.

    Attributes:
      steps: training steps (optimizer updates); 0 for a timing-only run (no training).
      eval_every: evaluate the whole evaluation split every this many steps (and at the end).
      chunk_steps: training steps per compiled call; the loss of every step is still kept.
      timing_protocol: ``scan`` times blocks of ``timing_block`` steps inside one compiled
        call and divides (tiny tasks are otherwise all dispatch, about 50 us a call);
        ``per_call`` times single compiled calls.
      timing_block: steps per timed call under ``scan``.
      timing_steps: timed steps of each of step, gradient and update (per protocol call count
        is ``timing_steps // timing_block`` under ``scan``).
      timing_budget_s: stop timing after about this many seconds (at least 10 calls of each
        function are always timed); 0 for no limit.
      warmup_steps: untimed calls before timing.
      divergence_factor: a training loss above this multiple of the first step's loss (or a
        non-finite one) marks the run diverged.
      timing: time the step, gradient and update (a timing-grade run, which a sweep never
        runs beside another); false for a throughput-only run (step times left empty), which
        may share the machine.
    """

    steps: int = 2000
    eval_every: int = 200
    chunk_steps: int = 100
    timing_protocol: str = "scan"
    timing_block: int = 20
    timing_steps: int = 2000
    timing_budget_s: float = 5.0
    warmup_steps: int = 3
    divergence_factor: float = 10.0
    timing: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "eval_every", "chunk_steps", "timing_steps", "timing_block",
                     "warmup_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"run.{name}={value!r}: expected an integer")
            least = 0 if name in ("steps", "warmup_steps") else 1
            if value < least:
                raise ValueError(f"run.{name}={value}: must be at least {least}")
        for name in ("divergence_factor", "timing_budget_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"run.{name}={value!r}: expected a number")
        if self.timing_budget_s < 0:
            raise ValueError(f"run.timing_budget_s={self.timing_budget_s}: must be >= 0")
        if self.timing_protocol not in ("scan", "per_call"):
            raise ValueError(
                f"run.timing_protocol={self.timing_protocol!r}: expected 'scan' or 'per_call'")
        if not isinstance(self.timing, bool):
            raise ValueError(f"run.timing={self.timing!r}: expected true or false")
        if not self.divergence_factor > 1:
            raise ValueError(f"run.divergence_factor={self.divergence_factor}: must exceed 1")


@dataclass(frozen=True)
class RunResult:
    """Summary numbers (one row of runs.parquet, without config columns) and the curves."""

    status: str
    summary: dict[str, Any]
    curves: pd.DataFrame


def _step_functions(task: Task, tx: optax.GradientTransformationExtraArgs):
    """The gradient, the update and their fusion, as pure functions to compile."""

    def grad_fn(params, batch):
        return jax.value_and_grad(task.loss)(params, batch)

    def update_fn(params, opt_state, grads, loss):
        updates, opt_state = tx.update(grads, opt_state, params, value=loss)
        return optax.apply_updates(params, updates), opt_state

    def step_fn(params, opt_state, batch):
        loss, grads = grad_fn(params, batch)
        params, opt_state = update_fn(params, opt_state, grads, loss)
        return params, opt_state, loss

    def train_chunk(params, opt_state, batches):
        def body(carry, batch):
            params, opt_state, loss = step_fn(*carry, batch)
            return (params, opt_state), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), batches)
        return params, opt_state, losses

    return grad_fn, update_fn, step_fn, train_chunk


def _eval_function(task: Task):
    """The loss and the task's metrics (if any) of one batch, as one jitted dict."""

    def evaluate(params, batch):
        extra = task.metrics(params, batch) if task.metrics is not None else {}
        return {**extra, "loss": task.loss(params, batch)}

    return jax.jit(evaluate)


def _evaluate(eval_fn, params, task: Task) -> tuple[float, dict[str, float]]:
    """Mean loss and metrics over the whole evaluation split, weighting batches by size."""
    totals: dict[str, float] = {}
    count = 0
    for batch in task.eval_batches():
        n = len(next(iter(batch.values())))
        for name, value in eval_fn(params, batch).items():
            totals[name] = totals.get(name, 0.0) + float(value) * n
        count += n
    means = {name: total / count for name, total in totals.items()}
    return means.pop("loss"), means


def _scanned(fn_step, length: int, stacked: bool):
    """Repeat a step ``length`` times inside one compiled call, to time it without dispatch.

    With ``stacked`` each repetition takes its own slice of ``xs``; otherwise all share ``xs``.
    """

    def repeated(carry, xs):
        if stacked:
            return jax.lax.scan(lambda c, x: (fn_step(c, x), None), carry, xs)[0]
        return jax.lax.scan(lambda c, _: (fn_step(c, xs), None), carry, None, length=length)[0]

    return repeated


def _timed_functions(fns, protocol: str, block: int):
    """Step, gradient and update callables to time, as (carry, xs) -> carry functions.

    ``per_call``: one step per compiled call. ``scan``: ``block`` steps per call, each on its
    own batch so that XLA cannot hoist the gradient out of the loop.
    """
    grad_fn, update_fn, step_fn, _ = fns

    def step_one(carry, batch):
        # The loss is carried out as the training loop records it every step: dropped, XLA
        # would prune its last ops from the step while the gradient's timing keeps them.
        return step_fn(carry[0], carry[1], batch)

    def update_one(carry, xs):
        grads, loss = xs
        return update_fn(carry[0], carry[1], grads, loss)

    def grad_one(carry, batch):
        # The gradient replaces the carried one: live in the loop's output, so never dropped,
        # and no extra arithmetic is added to what is timed.
        return carry[0], grad_fn(carry[0], batch)

    def grad_block(carry, batches):
        # The parameters stay fixed: only the gradient is carried through the loop.
        params, last = carry
        step = lambda last, batch: (grad_fn(params, batch), None)  # noqa: E731
        return params, jax.lax.scan(step, last, batches)[0]

    if protocol == "per_call":
        return step_one, grad_one, update_one
    if protocol == "scan":
        return (_scanned(step_one, block, stacked=True), grad_block,
                _scanned(update_one, block, stacked=False))
    raise ValueError(f"run.timing_protocol={protocol!r}: expected 'scan' or 'per_call'")


def measure_costs(task: Task, tx: optax.GradientTransformationExtraArgs, settings: RunSettings,
                  seed: int = 0) -> dict[str, Any]:
    """Sizes, state memory, compile time, XLA's static costs and the step, gradient and update
    times of ``tx`` on ``task``, without training (the first half of ``run``).

    A step of plain SGD on the same task and batch is timed alongside (interleaved), so that
    the optimizer's overhead over the cheapest possible update comes from one measurement.
    """
    param_shapes = jax.eval_shape(task.init, jax.random.key(seed))
    n_params = num_params(task)
    out: dict[str, Any] = {
        "num_params": n_params,
        "param_bytes": memory.tree_bytes(param_shapes),
        "batch_size": task.batch_size,
        **memory.state_summary(tx.init, param_shapes),
    }
    fns = _step_functions(task, tx)
    grad_fn, update_fn, step_fn, _ = fns
    batches = task.train_batches(seed)
    batch = jax.device_put(next(batches))

    params = initial_params(task, seed)
    opt_state = _fresh_state(tx, params)
    start = time.perf_counter()
    step = jax.jit(step_fn, donate_argnums=(0, 1)).lower(params, opt_state, batch).compile()
    out["compile_time_s"] = time.perf_counter() - start
    out.update(compiled_costs(step, "step"))
    grad = jax.jit(grad_fn).lower(params, batch).compile()
    out.update(compiled_costs(grad, "grad"))
    loss, grads = grad(params, batch)
    update = jax.jit(update_fn, donate_argnums=(0, 1)).lower(params, opt_state, grads, loss)
    out.update(compiled_costs(update.compile(), "update"))
    if not settings.timing:  # throughput-only: no step times
        return out

    protocol, block = settings.timing_protocol, settings.timing_block
    per_call = protocol == "per_call"
    block = 1 if per_call else block
    step_t, grad_t, update_t = _timed_functions(fns, protocol, block)
    reference = optax.with_extra_args_support(optax.sgd(SGD_REFERENCE_LR))
    sgd_step_t = _timed_functions(_step_functions(task, reference), protocol, block)[0]
    xs_batch = batch if per_call else jax.device_put(
        {k: np.stack(v) for k, v in _gather(batches, block).items()})
    xs_update = (grads, loss)
    zeros = jax.tree.map(jnp.zeros_like, (loss, grads))
    # Each function gets its own copy of the inputs: steps and updates donate theirs call to call.
    copy = functools.partial(jax.tree.map, jnp.copy)
    # Every carry is donated, so outputs reuse the input buffers as in a real training loop.
    timed = {  # name: (function, carry, inputs)
        "step_time": (step_t, (params, opt_state, copy(zeros[0])), xs_batch),
        "update_time": (update_t, copy((params, opt_state)), xs_update),
        "grad_time": (grad_t, (copy(params), zeros), xs_batch),
        "sgd_step_time": (sgd_step_t, (copy(params), reference.init(params), copy(zeros[0])),
                          xs_batch),
    }
    carries = {name: carry for name, (_, carry, _) in timed.items()}
    calls = {}
    for name, (fn, carry, xs) in timed.items():
        compiled = jax.jit(fn, donate_argnums=0).lower(carry, xs).compile()

        def call(name=name, compiled=compiled, xs=xs):
            carries[name] = compiled(carries[name], xs)
            return carries[name]

        calls[name] = call
    repeats = max(1, settings.timing_steps // block)
    samples = time_interleaved(calls, repeats, settings.warmup_steps,
                               budget_s=settings.timing_budget_s)
    for name, values in samples.items():
        out.update(summarize(values / block, name))
    out["timing_protocol"] = protocol
    out["timing_block"] = block
    out["update_over_grad"] = out["update_time_median_s"] / out["grad_time_median_s"]
    out["step_over_sgd_step"] = out["step_time_median_s"] / out["sgd_step_time_median_s"]
    return out


def compiled_unoptimised(fn: Callable[..., Any], *args: Any) -> Callable[..., Any]:
    """``fn`` compiled for arguments like ``args`` without XLA's backend optimisations.

    For the programs a run calls once (initialisers): there optimising costs far more than it
    saves. The standard task's initialiser (two truncated normals: threefry hashing, erf_inv)
    compiles in 0.3 s instead of 1.2 s on the 2-core CPU, and its values agree with the
    optimised program's to 1 ulp, as eager execution's do. The last few programs are kept:
    a run initialises once to measure and once to train.
    """
    leaves, structure = jax.tree.flatten(args)
    key = (fn, structure, tuple((leaf.shape, leaf.dtype) for leaf in leaves))
    try:
        return _UNOPTIMISED[key]
    except (KeyError, TypeError):  # not compiled yet, or ``fn`` cannot be a dict key
        pass
    compiled = jax.jit(fn).lower(*args).compile(
        compiler_options={"xla_backend_optimization_level": 0})
    try:
        _UNOPTIMISED[key] = compiled
    except TypeError:
        return compiled
    while len(_UNOPTIMISED) > 8:  # a shared-process sweep builds a task per run
        _UNOPTIMISED.pop(next(iter(_UNOPTIMISED)))
    return compiled


_UNOPTIMISED: dict[Any, Any] = {}


def initial_params(task: Task, seed: int) -> Any:
    """The task's initial parameters for ``seed``."""
    key = jax.random.key(seed)
    return compiled_unoptimised(task.init, key)(key)


def _fresh_state(tx: optax.GradientTransformation, params: Any) -> Any:
    """``tx.init(params)`` with every leaf in a buffer of its own: an init may hand out one
    array for several leaves (the same zeros twice), and a donated buffer must appear once."""
    return _own_buffers(compiled_unoptimised(tx.init, params)(params))


def _own_buffers(tree: Any) -> Any:
    return jax.tree.map(jnp.copy, tree)


def _chunk_bounds(steps: int, chunk: int, eval_every: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) step ranges that end at every evaluation point."""
    stops = sorted(set(range(chunk, steps, chunk)) | set(range(eval_every, steps, eval_every)))
    ends = [*stops, steps]
    return list(zip([0, *ends[:-1]], ends))


def _diverged_at(losses: np.ndarray, limit: float) -> int | None:
    bad = ~np.isfinite(losses) | (losses > limit)
    return int(np.argmax(bad)) if bad.any() else None


def run(task: Task, tx: optax.GradientTransformationExtraArgs, settings: RunSettings,
        seed: int = 0) -> RunResult:
    """Train ``tx`` on ``task`` for ``settings.steps`` steps and measure it."""
    memory.reset_peak_rss()
    summary: dict[str, Any] = {"steps": settings.steps, "num_classes": task.num_classes,
                               **measure_costs(task, tx, settings, seed)}
    if settings.steps == 0:  # timing-only run
        summary.update(steps_completed=0, **_memory_peaks())
        return RunResult("ok", summary, pd.DataFrame(columns=["step", "split", "loss",
                                                              "wall_time_s"]))
    fns = _step_functions(task, tx)

    train_chunk = jax.jit(fns[3], donate_argnums=(0, 1))
    compiled_chunks: dict[int, Any] = {}
    eval_fn = _eval_function(task)
    params = initial_params(task, seed)
    opt_state = _fresh_state(tx, params)
    batches = task.train_batches(seed)
    train_clock, eval_clock = Stopwatch(), Stopwatch()
    train_losses: list[np.ndarray] = []
    train_walls: list[np.ndarray] = []
    evals: list[tuple[int, float, float]] = []
    eval_metrics: list[dict[str, float]] = []
    status, limit = "ok", np.inf

    with eval_clock:
        loss, metrics = _evaluate(eval_fn, params, task)
        evals.append((0, loss, 0.0))
        eval_metrics.append(metrics)
    for start, end in _chunk_bounds(settings.steps, settings.chunk_steps, settings.eval_every):
        stacked = {k: np.stack(v) for k, v in _gather(batches, end - start).items()}
        if end - start not in compiled_chunks:  # compile off the training clock
            lowered = train_chunk.lower(params, opt_state, stacked)
            compiled_chunks[end - start] = lowered.compile()
        with train_clock:
            before = train_clock.total
            params, opt_state, losses = compiled_chunks[end - start](params, opt_state, stacked)
            losses = np.asarray(jax.block_until_ready(losses))
        elapsed = train_clock.total - before
        if start == 0:
            limit = settings.divergence_factor * abs(float(losses[0]))  # NaN loss: caught below
        bad = _diverged_at(losses, limit)
        if bad is not None:
            losses = losses[: bad + 1]
            status = "diverged"
        train_losses.append(losses)
        train_walls.append(before + elapsed * np.arange(1, len(losses) + 1) / (end - start))
        if status == "diverged":
            break
        if end % settings.eval_every == 0 or end == settings.steps:
            with eval_clock:
                loss, metrics = _evaluate(eval_fn, params, task)
                evals.append((end, loss, train_clock.total))
                eval_metrics.append(metrics)

    losses = np.concatenate(train_losses)
    tail = max(1, len(losses) // 10)
    eval_values = [loss for _, loss, _ in evals]
    accuracies = [m.get("accuracy", np.nan) for m in eval_metrics]
    summary.update(
        steps_completed=len(losses) if status == "ok" else len(losses) - 1,
        final_train_loss=float(np.mean(losses[-tail:])),
        last_train_loss=float(losses[-1]),
        final_eval_loss=eval_values[-1] if status == "ok" else float("nan"),
        best_eval_loss=float(np.nanmin(eval_values)),
        first_train_loss=float(losses[0]),
        final_eval_accuracy=accuracies[-1] if status == "ok" else float("nan"),
        best_eval_accuracy=float("nan") if np.all(np.isnan(accuracies)) else float(
            np.nanmax(accuracies)),
        train_time_s=train_clock.total,
        eval_time_s=eval_clock.total,
        **_memory_peaks(),
    )
    curves = pd.concat(
        [
            pd.DataFrame({
                "step": np.arange(len(losses)),
                "split": "train",
                "loss": losses.astype(np.float64),
                "wall_time_s": np.concatenate(train_walls),
            }),
            pd.DataFrame(evals, columns=["step", "loss", "wall_time_s"]).assign(split="eval"),
        ],
        ignore_index=True,
    )[["step", "split", "loss", "wall_time_s"]]
    return RunResult(status=status, summary=summary, curves=curves)


def _memory_peaks() -> dict[str, int | None]:
    return {
        "peak_rss_bytes": memory.peak_rss_bytes(),
        "peak_device_bytes": memory.peak_device_bytes(),
        "nvml_used_bytes": memory.nvml_used_bytes(),
    }


def _gather(batches, count: int) -> dict[str, list[np.ndarray]]:
    """Take ``count`` batches from an iterator, grouped by field."""
    grouped: dict[str, list[np.ndarray]] = {}
    for _ in range(count):
        for key, value in next(batches).items():
            grouped.setdefault(key, []).append(value)
    return grouped
