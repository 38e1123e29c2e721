"""Building blocks shared by the learned optimizers (constants from Metz et al. 2022 and the
reference code base google/learned_optimization, as summarised in the project's notes)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

# Time features: tanh(t / tau - 1) for these timescales (11 features).
TIME_SCALES = (1, 3, 10, 30, 100, 300, 1e3, 3e3, 1e4, 3e4, 1e5)
# Second-moment feature normalisation: x / sqrt(NORM_EPS + mean(x^2)) per tensor and feature.
NORM_EPS = 1e-5


def time_features(step: jax.Array) -> jax.Array:
    """[11] features of the number of updates done before this one."""
    t = jnp.asarray(step, jnp.float32)
    return jnp.tanh(t / jnp.asarray(TIME_SCALES, jnp.float32) - 1.0)


def decay_to_param(decay: float) -> float:
    """Decays are learned in the space log(1 - decay) / 10, where steps are better scaled."""
    return math.log1p(-float(decay)) / 10.0


def learned_decays(base: Sequence[float], offsets: jax.Array, clip: bool) -> jax.Array:
    """Decays ``1 - exp(10 * (param(base) + offset))``; second moments clip theirs to [0, 1]."""
    if len(base) == 0:
        return jnp.zeros((0,), jnp.float32)
    params = jnp.asarray([decay_to_param(d) for d in base], jnp.float32) + offsets
    decays = 1.0 - jnp.exp(10.0 * params)
    return jnp.clip(decays, 0.0, 1.0) if clip else decays


def safe_rsqrt(x: jax.Array) -> jax.Array:
    return jax.lax.rsqrt(jnp.maximum(x, 1e-9))


def init_mlp(key: jax.Array, sizes: Sequence[int]) -> list[dict[str, jax.Array]]:
    """Dense layers with truncated-normal weights of std 1/sqrt(fan_in) and zero biases (the
    reference code base's initialisation of its per-parameter networks)."""
    layers = []
    for key_i, fan_in, fan_out in zip(jax.random.split(key, len(sizes) - 1), sizes[:-1],
                                      sizes[1:]):
        w = jax.random.truncated_normal(key_i, -2.0, 2.0, (fan_in, fan_out)) / jnp.sqrt(fan_in)
        layers.append({"w": w.astype(jnp.float32), "b": jnp.zeros((fan_out,), jnp.float32)})
    return layers


def count_params(tree) -> int:
    return int(sum(x.size for x in jax.tree.leaves(tree)))


def require_loss(name: str, value) -> jax.Array:
    """The loss passed through optax's extra args, or a clear error naming what to do."""
    if value is None:
        raise ValueError(
            f"{name} needs the training loss: call update(grads, state, params, value=loss)")
    return jnp.asarray(value, jnp.float32)


def require_params(name: str, params):
    """The parameters, which every learned optimizer reads as a feature, or a clear error."""
    if params is None:
        raise ValueError(f"{name} needs the parameters: call update(grads, state, params)")
    return params


def tuple_fields(config: Any) -> None:
    """Turn every sequence-valued field of a frozen dataclass into a tuple of floats.

    Hydra passes YAML lists as omegaconf ``ListConfig`` objects, which are neither tuples nor
    JSON-able; converting here keeps configs hashable and checkpoint headers exact.
    """
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, Sequence) and not isinstance(value, (str, tuple)):
            object.__setattr__(config, field.name, tuple(float(v) for v in value))


def second_moment_scale(x: jax.Array) -> jax.Array:
    """Per-channel (trailing axis) rsqrt(NORM_EPS + mean over the tensor's elements of x^2)."""
    axes = tuple(range(x.ndim - 1))
    return jax.lax.rsqrt(NORM_EPS + jnp.mean(jnp.square(x), axis=axes))


def apply_mlp(layers: Sequence[dict[str, jax.Array]], x: jax.Array,
              first: dict[str, jax.Array] | None = None) -> jax.Array:
    """Dense layers over the trailing axis with ReLU between them (none after the last).

    ``first``, if given, replaces the first layer (a per-tensor rescaled copy of it).
    """
    for i, layer in enumerate(layers):
        layer = first if i == 0 and first is not None else layer
        x = x @ layer["w"] + layer["b"]
        if i < len(layers) - 1:
            x = jax.nn.relu(x)
    return x


def fold_first_layer(layer: dict[str, jax.Array], scale: jax.Array,
                     context: jax.Array) -> dict[str, jax.Array]:
    """First layer on [normalised features, per-tensor context] written as one on the raw
    features: rows of the normalised inputs scaled by ``scale``, the context's rows folded
    into the bias (``context`` holds the inputs that are the same for every element)."""
    n = scale.shape[-1]
    w = layer["w"][:n] * scale[:, None]
    b = layer["b"] + context @ layer["w"][n:]
    return {"w": w, "b": b}


def apply_mlp_columns(layers: Sequence[dict[str, jax.Array]], x: jax.Array,
                      first: dict[str, jax.Array] | None = None) -> jax.Array:
    """``apply_mlp`` on features stored as rows, [F, B] -> [outputs, B]: each layer as
    W^T @ X, whose long trailing axis XLA:CPU's matrix products run far faster than the
    [B, F] @ W form."""
    for i, layer in enumerate(layers):
        layer = first if i == 0 and first is not None else layer
        x = layer["w"].T @ x + layer["b"][:, None]
        if i < len(layers) - 1:
            x = jax.nn.relu(x)
    return x


def stack_rows(groups: Sequence[jax.Array]) -> jax.Array:
    """Row groups [F_i, B] as one [sum F_i, B] array, each group computed on its own first:
    XLA:CPU compiles a concatenation fused with its operands' elementwise work (logs,
    rsqrts) into scalar code, measured 3-4x slower than the groups apart."""
    return jnp.concatenate(jax.lax.optimization_barrier(list(groups)), axis=0)


def over_blocks(n: int, block: int, fn: Callable[[Any, int], tuple[Any, jax.Array]],
                sum_size: int, values: bool = True) -> tuple[jax.Array | None, jax.Array]:
    """Elements ``0..n`` a block at a time: ``fn(start, length)`` gives the block's values
    (``[length]``, or None when ``values`` is false) and sums (``[sum_size]``); returns all
    values ``[n]`` and the total of the sums. Whole blocks run in a loop (one compiled body),
    the tail that fills no whole block once after it, so no full-size temporary is built."""
    blocks = n // block

    def body(i, carry):
        out, total = carry
        vals, sums = fn(i * block, block)
        if values:
            out = jax.lax.dynamic_update_slice_in_dim(out, vals, i * block, 0)
        return out, total + sums

    out = jnp.zeros((n if values else 0,), jnp.float32)
    out, total = jax.lax.fori_loop(0, blocks, body, (out, jnp.zeros((sum_size,), jnp.float32)))
    done = blocks * block
    if done < n:
        vals, sums = fn(done, n - done)
        out = out.at[done:].set(vals) if values else out
        total = total + sums
    return (out if values else None), total
