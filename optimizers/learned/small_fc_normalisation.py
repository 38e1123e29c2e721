"""small_fc_lopt's feature normalisation: each feature divided by the root of its mean square
over the tensor (the reference's exact rule), taken a block of rows at a time on CPU."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optimizers.learned.common import NORM_EPS
from optimizers.learned.networks import network_unrolled
from optimizers.learned.small_fc_features import features

# Normalisation sums over tensors of at least this many elements are taken a block of rows
# at a time, all features of a block together while it sits in cache: one pass over memory
# instead of one pass per feature (XLA:CPU gives every reduction its own pass and materialises
# the features it reduces). Blocks hold about BLOCK_ELEMENTS elements. Only on the backends in
# BLOCKED_NORM_BACKENDS: GPU compilers fuse sibling reductions into one kernel already, and a
# loop of small kernels there would cost a launch per block.
BLOCKED_NORM_MIN_SIZE = 1 << 18
BLOCK_ELEMENTS = 1 << 15
BLOCKED_NORM_BACKENDS = ("cpu",)


def row_block(inputs: dict[str, Any], start, length: int, rows: int) -> dict[str, Any]:
    """Rows ``start:start + length`` of every input aligned with the tensor's axis 0; inputs
    broadcast along that axis are kept whole."""
    return _take_rows(inputs, rows, lambda x, axis: jax.lax.dynamic_slice_in_dim(
        x, start, length, axis=axis))


def _take_rows(inputs: dict[str, Any], rows: int, take) -> dict[str, Any]:
    """``take(x, axis)`` applied to every input aligned with the tensor's ``rows`` rows (the
    accumulators' rows are on axis 1); inputs broadcast along them are kept whole."""
    def rows_of(x, axis=0):
        return x if x is None or x.shape[axis] != rows else take(x, axis)

    block = {"g": rows_of(inputs["g"]), "p": rows_of(inputs["p"]),
             "momenta": rows_of(inputs["momenta"], 1), "rms": rows_of(inputs["rms"], 1),
             "factored": inputs["factored"]}
    if inputs["factored"] is not None:
        block["factored"] = jax.tree.map(rows_of, inputs["factored"])
    return block


def private_copy(x: jax.Array, tag: int) -> jax.Array:
    """``x`` behind an optimisation barrier that XLA cannot merge with another (the tag makes
    each barrier distinct): computations on it are not shared with computations on ``x``."""
    return jax.lax.optimization_barrier((x, jnp.int32(tag)))[0]


def sums_of_squares(inputs: dict[str, Any], config: Any, index: list[int],
                     shape: tuple[int, ...]) -> jax.Array:
    """Sum over the tensor of the square of each feature in ``index`` (full-size features)."""
    def block_sums(block):
        feats = features(block, config)
        return jnp.stack([jnp.sum(jnp.square(feats[k])) for k in index])

    size, rows = int(np.prod(shape)), (shape[0] if shape else 1)
    if (size < BLOCKED_NORM_MIN_SIZE or rows < 2
            or jax.default_backend() not in BLOCKED_NORM_BACKENDS):
        return block_sums(inputs)
    per_block = min(rows, max(1, BLOCK_ELEMENTS // (size // rows)))
    blocks, tail = divmod(rows, per_block)
    sums = jax.lax.fori_loop(
        0, blocks,
        lambda i, acc: acc + block_sums(row_block(inputs, i * per_block, per_block, rows)),
        jnp.zeros((len(index),), jnp.float32))
    if tail:
        sums = sums + block_sums(row_block(inputs, blocks * per_block, tail, rows))
    return sums


def norm_scales(inputs: dict[str, Any], feats: list[jax.Array], config: Any,
                shape: tuple[int, ...]) -> jax.Array:
    """1 / sqrt(eps + mean(x^2)) per feature. A broadcast statistic has the mean of its
    reduced form, so those means are taken before broadcasting (cheaper, same value)."""
    full = full_features(feats, shape)
    sums = sums_of_squares(inputs, config, full, shape) if full else jnp.zeros((0,))
    return _scales(feats, full, sums / np.prod(shape))


# --- faster design options (Config.normalisation) ------------------------------------------
# exact: every feature's mean square over the whole tensor, this step (the reference's rule).
# subsampled: a full-size feature's mean square over every norm_stride-th row of axis 0 (a
#   fixed subsample), for tensors of at least SUBSAMPLED_MIN_SIZE elements with enough rows.
# lagged: a full-size feature's mean square from the previous step, kept in the state (one
#   float per such feature and tensor); the first step uses its own. A backend that fuses a
#   reduction with elementwise work can then make the update one pass (see lagged_steps).
# The reduced statistics of factored tensors (row and column means) are cheap and stay exact.
NORMALISATIONS = ("exact", "subsampled", "lagged")
SUBSAMPLED_MIN_SIZE = 1 << 10


def full_features(feats: list[jax.Array], shape: tuple[int, ...]) -> list[int]:
    """Indices of the features that are full-size (not a broadcast reduced statistic)."""
    return [k for k, f in enumerate(feats) if f.shape == tuple(shape)]


def _scales(feats: list[jax.Array], full: list[int], full_means: jax.Array) -> jax.Array:
    """rsqrt(eps + mean square) per feature: the full-size ones' means given, the reduced
    statistics' taken now from their reduced form."""
    means = {k: jnp.mean(jnp.square(f)) for k, f in enumerate(feats) if k not in full}
    means.update({k: full_means[i] for i, k in enumerate(full)})
    return jax.lax.rsqrt(NORM_EPS + jnp.stack([means[k] for k in range(len(feats))]))


def _strided_rows(inputs: dict[str, Any], stride: int, rows: int) -> dict[str, Any]:
    """Every ``stride``-th row (axis 0) of the inputs aligned with it (see ``row_block``)."""
    return _take_rows(inputs, rows, lambda x, axis: jax.lax.slice_in_dim(
        x, 0, rows, stride=stride, axis=axis))


def subsampled_scales(inputs: dict[str, Any], feats: list[jax.Array], config: Any,
                      shape: tuple[int, ...]) -> jax.Array:
    """The scales with the full-size features' mean squares from a strided row subsample."""
    stride = config.norm_stride
    size = int(np.prod(shape))
    if size < SUBSAMPLED_MIN_SIZE or len(shape) == 0 or shape[0] < 2 * stride:
        return norm_scales(inputs, feats, config, shape)
    full = full_features(feats, shape)
    sub_shape = (len(range(0, shape[0], stride)), *shape[1:])
    sums = sums_of_squares(_strided_rows(inputs, stride, shape[0]), config, full, sub_shape)
    return _scales(feats, full, sums / np.prod(sub_shape))


def lagged_steps(network: Any, inputs: dict[str, Any], feats: list[jax.Array], config: Any,
                 shape: tuple[int, ...], time: Any, previous: jax.Array, first_step: Any,
                 output) -> tuple[jax.Array, jax.Array]:
    """Steps with the previous step's mean squares (this step's own on the first), and this
    step's mean squares of the full-size features for the next: ``(steps, means)``.
    ``output(direction, magnitude)`` turns the network's outputs into steps.

    The network and this step's sums are two passes here, as in the exact rule: one loop over
    row blocks doing both compiled about 4x slower on XLA:CPU than the whole-tensor network,
    which XLA:CPU runs poorly inside a loop body."""
    full = full_features(feats, shape)
    means = sums_of_squares(inputs, config, full, shape) / np.prod(shape)
    scales = _scales(feats, full, jnp.where(first_step, means, previous))
    return output(*network_unrolled(network, feats, scales, time, shape)), means
