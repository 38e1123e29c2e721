"""The pure functions a run compiles: gradient, update, their fusion, and a chunk of training
steps for one or several seeds; and the initial parameters and optimizer state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from tasks.base import Task


class StepFunctions(NamedTuple):
    """``grad(params, batch) -> (loss, grads)``, ``update(params, state, grads, loss) ->
    (params, state)`` and ``step(params, state, batch) -> (params, state, loss)``."""

    grad: Callable[..., Any]
    update: Callable[..., Any]
    step: Callable[..., Any]


def step_functions(task: Task, tx: optax.GradientTransformationExtraArgs) -> StepFunctions:
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

    return StepFunctions(grad_fn, update_fn, step_fn)


def _batch(xs: Any, data: dict[str, jax.Array] | None) -> Any:
    """One step's batch: ``xs`` itself, or the rows ``xs`` of the device-resident ``data``."""
    if data is None:
        return xs
    return {k: a.at[xs].get(mode="promise_in_bounds", unique_indices=True)
            for k, a in data.items()}


def train_chunk(task: Task, tx: optax.GradientTransformationExtraArgs, batching: str):
    """``(carry, xs, data) -> (carry, losses)``: scanned training steps of every seed; losses
    come back as [seeds, steps], ``xs`` are batches or row indices into ``data``.

    ``vmap``: the carry is (params, opt_state) with a leading seed axis, xs [seeds, steps, ...].
    ``unroll``: the carry is a list of one (params, opt_state) per seed, xs a list of one
    [steps, ...] per seed (kept apart: slicing one stacked array per seed and step makes the
    program slower to compile). One seed unrolled is a plain scan of the fused step.
    """
    fused = step_functions(task, tx).step

    def step(carry, xs, data):
        params, opt_state, loss = fused(*carry, _batch(xs, data))
        return (params, opt_state), loss

    if batching == "vmap":
        def one_seed(carry, xs, data):
            return jax.lax.scan(lambda c, x: step(c, x, data), carry, xs)

        return jax.vmap(one_seed, in_axes=(0, 0, None))
    if batching != "unroll":
        raise ValueError(f"seed batching {batching!r}: expected 'vmap' or 'unroll'")

    def chunk(carries, xs, data):
        def body(carries, x):
            out = [step(carry, x_seed, data) for carry, x_seed in zip(carries, x)]
            return [o[0] for o in out], jnp.stack([o[1] for o in out])

        carries, losses = jax.lax.scan(body, carries, xs)
        return carries, losses.T

    return chunk


def compiled_unoptimised(fn: Callable[..., Any], *args: Any) -> Callable[..., Any]:
    """``fn`` compiled for arguments like ``args`` without XLA's backend optimisations.

    For the programs a run calls once (initialisers), where optimising costs far more than it
    saves; their values agree with the optimised program's to 1 ulp, as eager execution's do.
    The last few programs are kept: a run initialises once to measure and once to train.
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


def fresh_state(tx: optax.GradientTransformation, params: Any) -> Any:
    """``tx.init(params)`` with every leaf in a buffer of its own: an init may hand out one
    array for several leaves (the same zeros twice), and a donated buffer must appear once."""
    return own_buffers(compiled_unoptimised(tx.init, params)(params))


def own_buffers(tree: Any) -> Any:
    """A copy of ``tree`` whose every leaf has a buffer of its own (safe to donate)."""
    return jax.tree.map(jnp.copy, tree)
