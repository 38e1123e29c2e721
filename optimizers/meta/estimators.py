"""Gradient estimators for meta-parameters over truncated unrolls of one task's training.

PES (persistent evolution strategies; Vicol, Metz & Sohl-Dickstein, ICML 2021) is the paper's
estimator: antithetic pairs of perturbed meta-parameters each train their own copy of the
task for ``truncation`` steps; the pair's meta-loss difference times the perturbations
accumulated since the episode began is an unbiased estimate of the gradient of the whole
episode's meta-loss. Truncated ES (``tes``) uses only the current perturbation: cheaper to
reason about, biased towards short horizons. One call of ``estimate`` is one compiled program:
vmap over particles and the two signs, lax.scan over inner steps.

An episode ends at the first truncation boundary at or after ``inner_length`` steps. First
episodes are shorter by a random multiple of the truncation, so that the particles' truncations
fall in all phases of training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers.meta.inner import (
    NORMALISATIONS,
    device_sampler,
    loss_bound,
    meta_loss_terms,
    train_steps,
)
from tasks.base import Task

ESTIMATORS = ("pes", "tes")
MakeOptimizer = Callable[[Any], optax.GradientTransformationExtraArgs]


@dataclasses.dataclass(frozen=True)
class EstimatorSettings:
    """``particles`` antithetic pairs, each unrolled ``truncation`` inner steps per estimate,
    episodes of ``inner_length`` steps, perturbations of standard deviation ``std``
    (PES defaults: std 0.01, antithetic; REFERENCE.md)."""

    kind: str = "pes"
    particles: int = 4
    truncation: int = 30
    inner_length: int = 2000
    std: float = 0.01
    stagger: bool = True  # first episodes shorter by a random number of truncations
    normalisation: str = "log"  # per-task meta-loss: "log" of the clipped loss, or "none"

    def __post_init__(self) -> None:
        if self.kind not in ESTIMATORS:
            raise ValueError(f"meta.estimator={self.kind!r}: expected one of {ESTIMATORS}")
        for name in ("particles", "truncation", "inner_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"meta.{name}={getattr(self, name)}: must be at least 1")
        if self.inner_length < self.truncation:
            raise ValueError(f"meta.inner_length={self.inner_length} is shorter than "
                             f"meta.truncation={self.truncation}")
        if not self.std > 0:
            raise ValueError(f"meta.std={self.std}: must be positive")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"meta.normalisation={self.normalisation!r}: expected one of "
                             f"{NORMALISATIONS}")


class Particles(NamedTuple):
    """Persistent state of the particles: inner parameters and optimizer states with leading
    axes [2 (sign), particles], and per-particle episode bookkeeping."""

    params: Any
    opt_state: Any
    step: jax.Array      # [P] inner steps done in the current episode
    length: jax.Array    # [P] length of the current episode
    episode: jax.Array   # [P] episodes started so far (keys for fresh initialisations)
    accum: Any           # theta-shaped with leading [P]: perturbations summed this episode


class Estimator(NamedTuple):
    """``init(theta, key) -> Particles``; ``estimate(theta, particles, key) ->
    (gradient, particles, metrics)``; both compiled. ``task`` names the task it trains."""

    task: str
    init: Callable[[Any, jax.Array], Particles]
    estimate: Callable[[Any, Particles, jax.Array], tuple[Any, Particles, dict]]


def _tile(tree: Any, n: int) -> Any:
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), tree)


def _select(mask: jax.Array, new: Any, old: Any) -> Any:
    """Per particle (the leading axis of ``mask``), ``new`` where mask else ``old``."""
    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)), a, b)
    return jax.tree.map(pick, new, old)


def make_estimator(task: Task, make_optimizer: MakeOptimizer,
                   settings: EstimatorSettings) -> Estimator:
    """A PES or truncated-ES estimator for meta-parameters of ``make_optimizer`` on ``task``
    (batches drawn on the device from its training arrays)."""
    P, T = settings.particles, settings.truncation
    sample, bound = device_sampler(task), loss_bound(task)

    def fresh(theta, keys):
        params = jax.vmap(task.init)(keys)
        opt_state = jax.vmap(make_optimizer(theta).init)(params)
        return _tile(params, 2), _tile(opt_state, 2)

    def init(theta, key):
        key_init, key_offset = jax.random.split(key)
        params, opt_state = fresh(theta, jax.random.split(key_init, P))
        truncations = settings.inner_length // T
        first = settings.inner_length - T * jax.random.randint(key_offset, (P,), 0, truncations)
        if not settings.stagger:
            first = jnp.full((P,), settings.inner_length, jnp.int32)
        zeros = jax.tree.map(lambda x: jnp.zeros((P, *jnp.shape(x)), jnp.float32), theta)
        return Particles(params, opt_state, jnp.zeros((P,), jnp.int32), first,
                         jnp.ones((P,), jnp.int32), zeros)

    def unroll(theta_one, params, opt_state, keys):
        return train_steps(task, sample, make_optimizer(theta_one), params, opt_state, keys)

    def estimate(theta, particles, key):
        key_reset, key_eps, key_data = jax.random.split(key, 3)
        # Particles whose episode has ended start a new one from a fresh initialisation.
        done = particles.step >= particles.length
        reset_keys = jax.vmap(lambda i, e: jax.random.fold_in(jax.random.fold_in(
            key_reset, i), e))(jnp.arange(P), particles.episode)
        new_params, new_opt = fresh(theta, reset_keys)
        both = jnp.stack([done, done])
        params = _select(both, new_params, particles.params)
        opt_state = _select(both, new_opt, particles.opt_state)
        step = jnp.where(done, 0, particles.step)
        length = jnp.where(done, settings.inner_length, particles.length)
        episode = particles.episode + done
        accum = _select(done, jax.tree.map(jnp.zeros_like, particles.accum), particles.accum)

        leaves, treedef = jax.tree.flatten(theta)
        eps_keys = jax.random.split(key_eps, len(leaves))
        eps = treedef.unflatten([settings.std * jax.random.normal(k, (P, *jnp.shape(x)))
                                 for k, x in zip(eps_keys, leaves)])
        accum = (jax.tree.map(jnp.add, accum, eps) if settings.kind == "pes" else eps)
        thetas = jax.tree.map(lambda t, e: jnp.stack([t + e, t - e]), theta, eps)

        # Both signs of a pair see the same batches: [P, T] keys, shared over the sign axis.
        data_keys = jax.vmap(lambda i, s: jax.vmap(lambda t: jax.random.fold_in(
            jax.random.fold_in(jax.random.fold_in(key_data, i), episode[i]), s + t))(
                jnp.arange(T)))(jnp.arange(P), step)
        over_particles = jax.vmap(unroll, in_axes=(0, 0, 0, 0))
        over_signs = jax.vmap(over_particles, in_axes=(0, 0, 0, None))
        params, opt_state, losses = over_signs(thetas, params, opt_state, data_keys)
        meta_losses = jnp.mean(meta_loss_terms(losses, bound, settings.normalisation),
                               axis=-1)  # [2, P]
        difference = meta_losses[0] - meta_losses[1]
        gradient = jax.tree.map(
            lambda a: jnp.tensordot(difference, a, axes=1) / (2 * settings.std ** 2 * P), accum)
        metrics = {"meta_loss": jnp.mean(meta_losses),
                   "inner_step": jnp.mean(step.astype(jnp.float32))}
        new = Particles(params, opt_state, step + T, length, episode, accum)
        return gradient, new, metrics

    return Estimator(task.name, jax.jit(init), jax.jit(estimate, donate_argnums=(1,)))
