"""Inner training for meta-training, from any Task that exposes its training arrays.

Batches are drawn on the device (uniformly, with replacement, from ``Task.train_arrays``), so a
whole truncated unroll is one compiled program. The meta-loss of an inner step is its training
loss clipped at a per-task bound and, by default, logged: the log makes a relative improvement
count the same on every task, so tasks whose losses are large do not dominate the average over
a family (the reference code base normalises by clipping classification losses at
1.5 ln(classes); Metz et al. 2022, REFERENCE.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from tasks.base import Batch, Task, num_examples

NORMALISATIONS = ("log", "none")
LOG_FLOOR = 1e-6  # losses below this count as this much in the log meta-loss
BOUND_OVER_INITIAL = 1.5  # tasks without classes: the bound is 1.5x the loss at initialisation


def device_sampler(task: Task) -> Callable[[jax.Array], Batch]:
    """``sample(key)``: a training batch of ``task.batch_size`` rows drawn on the device."""
    if task.train_arrays is None:
        raise ValueError(f"task {task.name!r} does not expose its training arrays "
                         "(Task.train_arrays), so meta-training cannot draw its batches on the "
                         "device; use a task whose batches are rows of arrays")
    arrays = {k: jnp.asarray(v) for k, v in task.train_arrays.items()}
    rows = num_examples(task.train_arrays)

    def sample(key: jax.Array) -> Batch:
        index = jax.random.randint(key, (task.batch_size,), 0, rows)
        return {k: a[index] for k, a in arrays.items()}

    return sample


def loss_bound(task: Task) -> float:
    """The most one inner step's loss counts for (also what a diverged step counts for):
    1.5 ln(classes) for classifiers, else 1.5x the loss at initialisation on one batch."""
    if task.num_classes:
        return 1.5 * math.log(task.num_classes)
    key_init, key_batch = jax.random.split(jax.random.key(0))
    initial = float(task.loss(task.init(key_init), device_sampler(task)(key_batch)))
    if not math.isfinite(initial) or initial <= 0:
        raise ValueError(f"task {task.name!r}: its loss at initialisation is {initial}; "
                         "a bound for the meta-loss needs a positive finite loss")
    return BOUND_OVER_INITIAL * initial


def meta_loss_terms(losses: jax.Array, bound: float, normalisation: str = "log") -> jax.Array:
    """Per inner step: the loss, at most ``bound`` (and ``bound`` where it is NaN or inf),
    logged if ``normalisation`` is ``"log"``."""
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"meta.normalisation={normalisation!r}: expected one of "
                         f"{NORMALISATIONS}")
    clipped = jnp.where(jnp.isfinite(losses), jnp.minimum(losses, bound), bound)
    return jnp.log(jnp.maximum(clipped, LOG_FLOOR)) if normalisation == "log" else clipped


def train_steps(task: Task, sample: Callable[[jax.Array], Batch],
                optimizer: optax.GradientTransformationExtraArgs, params: Any, opt_state: Any,
                keys: jax.Array) -> tuple[Any, Any, jax.Array]:
    """Inner training, one step per key (each draws its batch with ``sample``): final params
    and state and the loss of every step (before its update)."""
    def step(carry, key):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(task.loss)(params, sample(key))
        updates, opt_state = optimizer.update(grads, opt_state, params, value=loss)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), keys)
    return params, opt_state, losses
