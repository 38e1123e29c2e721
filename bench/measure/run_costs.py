"""What a run costs, measured without training: sizes, optimizer-state memory, compile time,
XLA's static costs, and the steady-state times of the fused step, the gradient and the update.

The protocol (docs/measurement.md): compile ahead of time (compile time recorded apart, never
in a step time); time each function in steady state with the device synchronised after every
call and every carry donated, interleaved with a plain-SGD step on the same task and batch so
that the optimizer's overhead comes from one measurement.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax

from bench.measure import memory
from bench.measure.timing import summarize, time_interleaved
from bench.measure.xla_cost import compiled_costs
from bench.train.feed import gather
from bench.train.settings import RunSettings
from bench.train.steps import fresh_state, initial_params, step_functions
from tasks.base import Task, num_params

# The reference step for overhead ratios: plain SGD (its learning rate does not change its cost).
SGD_REFERENCE_LR = 1e-3
TIMED = ("step_time", "update_time", "grad_time", "sgd_step_time")
# Columns of a timing-grade run; empty (None) in a throughput-only row, so every row has them.
TIMING_COLUMNS = (*(f"{name}_{stat}" for name in TIMED for stat in ("median_s", "p10_s", "p90_s",
                                                                    "n")),
                  "timing_protocol", "timing_block", "update_over_grad", "step_over_sgd_step")


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
    grad_fn, update_fn, step_fn = fns

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
                  seed: int = 0, timed: bool = True) -> dict[str, Any]:
    """Sizes, state memory, compile time, XLA's static costs and (with ``timed`` and
    ``settings.timing``) the step, gradient and update times of ``tx`` on ``task``.

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
    fns = step_functions(task, tx)
    grad_fn, update_fn, step_fn = fns
    batches = task.train_batches(seed)
    batch = jax.device_put(next(batches))

    params = initial_params(task, seed)
    opt_state = fresh_state(tx, params)
    start = time.perf_counter()
    step = jax.jit(step_fn, donate_argnums=(0, 1)).lower(params, opt_state, batch).compile()
    out["compile_time_s"] = time.perf_counter() - start
    out.update(compiled_costs(step, "step"))
    grad = jax.jit(grad_fn).lower(params, batch).compile()
    out.update(compiled_costs(grad, "grad"))
    loss, grads = grad(params, batch)
    update = jax.jit(update_fn, donate_argnums=(0, 1)).lower(params, opt_state, grads, loss)
    out.update(compiled_costs(update.compile(), "update"))
    if not (timed and settings.timing):  # throughput-only: no step times
        return {**out, **dict.fromkeys(TIMING_COLUMNS)}

    protocol, block = settings.timing_protocol, settings.timing_block
    per_call = protocol == "per_call"
    block = 1 if per_call else block
    step_t, grad_t, update_t = _timed_functions(fns, protocol, block)
    reference = optax.with_extra_args_support(optax.sgd(SGD_REFERENCE_LR))
    sgd_step_t = _timed_functions(step_functions(task, reference), protocol, block)[0]
    xs_batch = batch if per_call else jax.device_put(gather(batches, block))
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
