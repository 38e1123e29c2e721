"""small_fc_lopt's feature normalisation: each feature divided by the root of its mean square
over the tensor (the reference's exact rule), taken a block of rows at a time on CPU."""

from __future__ import annotations

import math
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
    def rows_of(x, lead):
        if x.shape[lead] != rows:
            return x
        return jax.lax.dynamic_slice_in_dim(x, start, length, axis=lead)
    return map_inputs(inputs, rows_of)


def map_inputs(inputs: dict[str, Any], take) -> dict[str, Any]:
    """``take(x, lead)`` applied to every input array, ``lead`` being the number of axes in
    front of the tensor's own (1 for the accumulators stacked over their decays)."""
    def apply(x, lead=0):
        return None if x is None else take(x, lead)

    out = {"g": apply(inputs["g"]), "p": apply(inputs["p"]),
           "momenta": apply(inputs["momenta"], 1), "rms": apply(inputs["rms"], 1),
           "factored": inputs["factored"]}
    if inputs["factored"] is not None:
        out["factored"] = jax.tree.map(apply, inputs["factored"])
    return out


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
# subsampled: a full-size feature's mean square over a fixed subsample of about one element in
#   norm_stride: runs of SAMPLE_RUN contiguous elements (one 64-byte cache line of float32, so
#   the sums read about 1/norm_stride of the memory) spaced so that they fall on every row and
#   every column position (see sample_spacing); only where the subsample holds at least
#   SUBSAMPLED_MIN_RUNS runs (smaller tensors are cheap to sum whole, and fewer runs misjudge
#   the scale: on a 28x28-image MLP of 128 units, 5 to 60 runs gave steps up to 3x the exact
#   rule's and 369 runs up to 1.16x, and the trained optimizer diverged on it at either).
# lagged: a full-size feature's mean square from the previous step, kept in the state (one
#   float per such feature and tensor); the first step uses its own. A backend that fuses a
#   reduction with elementwise work can then make the update one pass (see lagged_steps).
# The reduced statistics of factored tensors (row and column means) are cheap and stay exact.
NORMALISATIONS = ("exact", "subsampled", "lagged")
SUBSAMPLED_MIN_RUNS = 1 << 10
SAMPLE_RUN = 16


def full_features(feats: list[jax.Array], shape: tuple[int, ...]) -> list[int]:
    """Indices of the features that are full-size (not a broadcast reduced statistic)."""
    return [k for k, f in enumerate(feats) if f.shape == tuple(shape)]


def _scales(feats: list[jax.Array], full: list[int], full_means: jax.Array) -> jax.Array:
    """rsqrt(eps + mean square) per feature: the full-size ones' means given, the reduced
    statistics' taken now from their reduced form."""
    means = {k: jnp.mean(jnp.square(f)) for k, f in enumerate(feats) if k not in full}
    means.update({k: full_means[i] for i, k in enumerate(full)})
    return jax.lax.rsqrt(NORM_EPS + jnp.stack([means[k] for k in range(len(feats))]))


def sample_spacing(shape: tuple[int, ...], stride: int) -> int:
    """Runs taken one in ``spacing``: the smallest spacing of at least ``stride`` that is
    coprime with the last axis, so that the runs' starts cycle through every column position
    instead of landing on the same few columns of every row."""
    spacing = stride
    while math.gcd(spacing, shape[-1] if shape else 1) != 1:
        spacing += 1
    return spacing


def sample_count(shape: tuple[int, ...], stride: int) -> int:
    """Elements in the subsample: ``SAMPLE_RUN`` per run taken (a tail shorter than a run of
    the flattened tensor is left out)."""
    runs = int(np.prod(shape)) // SAMPLE_RUN
    return len(range(0, runs, sample_spacing(shape, stride))) * SAMPLE_RUN


def _subsample(inputs: dict[str, Any], shape: tuple[int, ...], stride: int) -> dict[str, Any]:
    """The inputs at the subsample's positions, as vectors: the ``SAMPLE_RUN`` elements of
    every ``sample_spacing``-th run of the flattened tensor. Full-size arrays are sliced (a
    strided view of their runs); broadcast statistics are gathered at the positions' indices
    along their own axes (they are small)."""
    size, spacing = int(np.prod(shape)), sample_spacing(shape, stride)
    runs, count = size // SAMPLE_RUN, sample_count(shape, stride)
    positions = (jnp.arange(count // SAMPLE_RUN)[:, None] * (spacing * SAMPLE_RUN)
                 + jnp.arange(SAMPLE_RUN)).reshape(-1)
    index = jnp.unravel_index(positions, shape)

    def take(x, lead):
        if x.shape[lead:] == tuple(shape):  # full-size, maybe behind a leading decay axis
            flat = x.reshape(*x.shape[:lead], size)[..., :runs * SAMPLE_RUN]
            chunks = flat.reshape(*x.shape[:lead], runs, SAMPLE_RUN)
            picked = jax.lax.slice_in_dim(chunks, 0, runs, stride=spacing, axis=lead)
            return picked.reshape(*x.shape[:lead], count)
        steps = np.cumprod((1, *x.shape[:0:-1]))[::-1]  # row-major strides of x, in elements
        flat_index = sum(i * int(step) for i, n, step in zip(index, x.shape, steps) if n != 1)
        return x.reshape(-1)[flat_index]

    return map_inputs(inputs, take)


def subsampled_scales(inputs: dict[str, Any], feats: list[jax.Array], config: Any,
                      shape: tuple[int, ...]) -> jax.Array:
    """The scales with the full-size features' mean squares from the fixed subsample."""
    stride = config.norm_stride
    count = sample_count(shape, stride)
    if count < SUBSAMPLED_MIN_RUNS * SAMPLE_RUN:
        return norm_scales(inputs, feats, config, shape)
    full = full_features(feats, shape)
    sums = sums_of_squares(_subsample(inputs, shape, stride), config, full, (count,))
    return _scales(feats, full, sums / count)


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
