"""small_fc_lopt: the small per-parameter learned optimizer of Metz et al. 2022 (the reference
code base's AdafacMLPLOpt), with its design features as config.

Per parameter: accumulators (momenta, an RMS, Adafactor-style factored second moments) are
updated with the gradient, turned into 28 features (at defaults), each normalised by its
second moment over the tensor, joined by 11 time features, and fed to a 39 -> 4 -> 4 -> 2 ReLU
network whose outputs, a direction d and a magnitude m, give the step
``d * exp(m * exp_mult) * step_mult``. The decays are meta-learned through offsets.

Two execution paths compute the same update:
  - ``stacked``: the features are stacked into a [..., F] array and the network is a chain of
    matrix products (simple; materialises F floats per parameter).
  - ``unrolled``: the normalisation is folded into the first layer's weights and the network is
    written as sums of scalar * tensor terms, which XLA fuses into elementwise loops that
    never hold the feature stack.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optimizers.learned.common import (
    NORM_EPS,
    init_mlp,
    learned_decays,
    require_params,
    safe_rsqrt,
    time_features,
)
from optimizers.learned.networks import network_stacked, network_unrolled

NAME = "small_fc_lopt"
PATHS = ("stacked", "unrolled")
# The faster path per backend, measured with `make bench` (small_fc_lopt/stacked and /unrolled
# rows): on a 2-core CPU 2.29 s stacked vs 96 ms unrolled at 10M parameters, 217 ms vs 12 ms at
# 1M; on an H100 (before the blocked normalisation sums), 72 ms vs 5.8 ms at 100M and 1.10 ms
# vs 0.37 ms at 1M.
DEFAULT_PATH = {"cpu": "unrolled", "gpu": "unrolled"}


@dataclasses.dataclass(frozen=True)
class Config:
    """The design space. Defaults are the paper's small_fc_lopt.

    Decay lists may be empty (that accumulator and its features are dropped); the feature
    flags switch groups off; state is kept only for accumulators some feature uses.
    """

    momentum_decays: tuple[float, ...] = (0.9, 0.99, 0.999)
    rms_decays: tuple[float, ...] = (0.999,)
    adafactor_decays: tuple[float, ...] = (0.9, 0.99, 0.999)
    hidden_size: int = 4
    hidden_layers: int = 2
    use_param: bool = True
    use_momenta: bool = True
    use_rms: bool = True            # rms and rsqrt(rms) features
    use_rms_momenta: bool = True    # momenta * rsqrt(rms)
    use_factored: bool = True       # factored preconditioned gradient, row/col stats, rsqrts
    use_factored_momenta: bool = True  # momenta times the factored preconditioner
    use_time: bool = True
    exp_mult: float = 0.001
    step_mult: float = 0.001
    path: str = "auto"              # stacked, unrolled, or auto (the faster on this backend)

    def __post_init__(self) -> None:
        if self.path not in (*PATHS, "auto"):
            raise ValueError(f"optimizer.path={self.path!r}: expected one of {PATHS} or 'auto'")
        if self.hidden_size < 1 or self.hidden_layers < 0:
            raise ValueError(f"optimizer.hidden_size={self.hidden_size}, hidden_layers="
                             f"{self.hidden_layers}: need hidden_size >= 1, hidden_layers >= 0")
        if num_features(self) == 0:
            raise ValueError("small_fc_lopt config leaves no input features")


def _pairs(a: int, b: int) -> list[tuple[int, int]]:
    """Index pairs for product features: matched one to one when the counts agree (the
    reference's layout), all combinations otherwise."""
    if a == b:
        return list(zip(range(a), range(b)))
    return list(itertools.product(range(a), range(b)))


def _needs(config: Config) -> tuple[bool, bool, bool]:
    """Which accumulators some feature reads: (momenta, rms, factored)."""
    n_m, n_r, n_f = (len(config.momentum_decays), len(config.rms_decays),
                     len(config.adafactor_decays))
    momenta = n_m > 0 and (config.use_momenta or (config.use_rms_momenta and n_r > 0)
                           or (config.use_factored_momenta and n_f > 0))
    rms = n_r > 0 and (config.use_rms or (config.use_rms_momenta and n_m > 0))
    factored = n_f > 0 and (config.use_factored or (config.use_factored_momenta and n_m > 0))
    return momenta, rms, factored


def num_features(config: Config) -> int:
    """Per-parameter accumulator features (time features excluded)."""
    n_m, n_r, n_f = (len(config.momentum_decays), len(config.rms_decays),
                     len(config.adafactor_decays))
    return (1 + config.use_param + n_m * config.use_momenta + 2 * n_r * config.use_rms
            + len(_pairs(n_m, n_r)) * config.use_rms_momenta * (n_m > 0 and n_r > 0)
            + 5 * n_f * config.use_factored
            + len(_pairs(n_m, n_f)) * config.use_factored_momenta * (n_m > 0 and n_f > 0))


def init_meta(key: jax.Array, config: Config = Config()) -> dict[str, Any]:
    """Network weights (truncated normal, std 1/sqrt(fan_in)) and zero decay offsets."""
    inputs = num_features(config) + (len(time_features(0)) if config.use_time else 0)
    sizes = [inputs, *[config.hidden_size] * config.hidden_layers, 2]
    return {
        "network": init_mlp(key, sizes),
        "momentum_offsets": jnp.zeros((len(config.momentum_decays),), jnp.float32),
        "rms_offsets": jnp.zeros((len(config.rms_decays),), jnp.float32),
        "adafactor_offsets": jnp.zeros((len(config.adafactor_decays),), jnp.float32),
    }


class SmallFcState(NamedTuple):
    """Accumulators per parameter leaf (leading axis: one slice per decay); empty tuples for
    the accumulators no feature uses."""

    count: jax.Array
    momenta: tuple[jax.Array, ...]
    rms: tuple[jax.Array, ...]
    factored: tuple[tuple[jax.Array, ...], ...]  # (row, col) for matrices, (v,) otherwise


def factored_dims(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """(d0, d1): the largest and second-largest axes (a stable sort, so for equal sizes d0 is
    the later axis), or None for tensors of rank < 2, which are not factored."""
    if len(shape) < 2:
        return None
    order = np.argsort(shape, kind="stable")
    return int(order[-1]), int(order[-2])


def _init_factored(p: jax.Array, n: int) -> tuple[jax.Array, ...]:
    dims = factored_dims(p.shape)
    if dims is None:
        return (jnp.zeros((n, *p.shape), p.dtype),)
    d0, d1 = dims
    row = [s for i, s in enumerate(p.shape) if i != d0]
    col = [s for i, s in enumerate(p.shape) if i != d1]
    return jnp.zeros((n, *row), p.dtype), jnp.zeros((n, *col), p.dtype)


def _tensor_inputs(g, p, momenta, rms, factored) -> dict[str, Any]:
    """What the features of one tensor are computed from: full-size arrays (gradient,
    parameter, accumulators stacked on a leading decay axis) and, for the factored
    accumulators, per-decay statistics already reduced and expanded to the tensor's rank.

    Every array here is elementwise-aligned with the tensor along axis 0 (axis 1 for the
    stacked accumulators) or broadcast along it, so a block of rows of the features is the
    features of the same block of rows of these inputs (see ``_row_block``)."""
    inputs: dict[str, Any] = {"g": g, "p": p, "momenta": momenta, "rms": rms, "factored": None}
    if factored is None:
        return inputs
    dims = factored_dims(p.shape)
    if dims is None:
        inputs["factored"] = tuple(factored[0][k] for k in range(factored[0].shape[0]))
        return inputs
    d0, d1 = dims
    d1_in_row = d1 if d1 < d0 else d1 - 1
    stats = []
    for k in range(factored[0].shape[0]):
        row, col = factored[0][k], factored[1][k]
        row_factor = safe_rsqrt(row / (jnp.mean(row, axis=d1_in_row, keepdims=True) + 1e-9))
        stats.append({
            "row_factor": jnp.expand_dims(row_factor, d0),
            "col_factor": jnp.expand_dims(safe_rsqrt(col), d1),
            "row": jnp.expand_dims(row, d0),
            "col": jnp.expand_dims(col, d1),
            "rsqrt_row": jnp.expand_dims(jax.lax.rsqrt(row + 1e-8), d0),
            "rsqrt_col": jnp.expand_dims(jax.lax.rsqrt(col + 1e-8), d1),
        })
    inputs["factored"] = tuple(stats)
    return inputs


def _features(inputs: dict[str, Any], config: Config) -> list[jax.Array]:
    """The per-parameter features of one tensor, in the reference's order; each is
    broadcastable to the tensor's shape (factored statistics stay in their reduced shape)."""
    g, p, momenta, rms = inputs["g"], inputs["p"], inputs["momenta"], inputs["rms"]
    feats = [g]
    if config.use_param:
        feats.append(p)
    m = [momenta[i] for i in range(momenta.shape[0])] if momenta is not None else []
    r = [rms[j] for j in range(rms.shape[0])] if rms is not None else []
    if config.use_momenta:
        feats += m
    if config.use_rms:
        feats += r
    rsqrt_rms = [jax.lax.rsqrt(x + 1e-6) for x in r]
    if config.use_rms_momenta and m and r:
        feats += [m[i] * rsqrt_rms[j] for i, j in _pairs(len(m), len(r))]
    if config.use_rms:
        feats += rsqrt_rms
    if inputs["factored"] is None:
        return feats
    fac_g, rows, cols, rsqrt_rows, rsqrt_cols, precond = [], [], [], [], [], []
    for stat in inputs["factored"]:
        if isinstance(stat, dict):
            factor = stat["row_factor"] * stat["col_factor"]
            fac_g.append(g * factor)
            rows.append(stat["row"])
            cols.append(stat["col"])
            rsqrt_rows.append(stat["rsqrt_row"])
            rsqrt_cols.append(stat["rsqrt_col"])
            precond.append(factor)
        else:  # a tensor of rank < 2 keeps a full second moment v
            v = stat
            fac_g.append(g * safe_rsqrt(v + 1e-9))
            rows.append(v)
            cols.append(v)
            rsqrt_rows.append(jax.lax.rsqrt(v + 1e-8))
            rsqrt_cols.append(jax.lax.rsqrt(v + 1e-8))
            precond.append((v + 1e-6) ** -0.5)
    if config.use_factored:
        feats += fac_g + rows + cols + rsqrt_rows + rsqrt_cols
    if config.use_factored_momenta and m:
        feats += [m[i] * precond[k] for i, k in _pairs(len(m), len(precond))]
    return feats


# Normalisation sums over tensors of at least this many elements are taken a block of rows
# at a time, all features of a block together while it sits in cache: one pass over memory
# instead of one pass per feature (XLA:CPU gives every reduction its own pass and materialises
# the features it reduces). Blocks hold about BLOCK_ELEMENTS elements. Only on the backends in
# BLOCKED_NORM_BACKENDS: GPU compilers fuse sibling reductions into one kernel already, and a
# loop of small kernels there would cost a launch per block.
BLOCKED_NORM_MIN_SIZE = 1 << 18
BLOCK_ELEMENTS = 1 << 15
BLOCKED_NORM_BACKENDS = ("cpu",)


def _row_block(inputs: dict[str, Any], start, length: int, rows: int) -> dict[str, Any]:
    """Rows ``start:start + length`` of every input aligned with the tensor's axis 0; inputs
    broadcast along that axis are kept whole."""
    def rows_of(x, axis=0):
        if x is None or x.shape[axis] != rows:
            return x
        return jax.lax.dynamic_slice_in_dim(x, start, length, axis=axis)

    block = {"g": rows_of(inputs["g"]), "p": rows_of(inputs["p"]),
             "momenta": rows_of(inputs["momenta"], 1), "rms": rows_of(inputs["rms"], 1),
             "factored": inputs["factored"]}
    if inputs["factored"] is not None:
        block["factored"] = jax.tree.map(rows_of, inputs["factored"])
    return block


def _private_copy(x: jax.Array, tag: int) -> jax.Array:
    """``x`` behind an optimisation barrier that XLA cannot merge with another (the tag makes
    each barrier distinct): computations on it are not shared with computations on ``x``."""
    return jax.lax.optimization_barrier((x, jnp.int32(tag)))[0]


def _sums_of_squares(inputs: dict[str, Any], config: Config, index: list[int],
                     shape: tuple[int, ...]) -> jax.Array:
    """Sum over the tensor of the square of each feature in ``index`` (full-size features)."""
    def block_sums(block):
        feats = _features(block, config)
        return jnp.stack([jnp.sum(jnp.square(feats[k])) for k in index])

    size, rows = int(np.prod(shape)), shape[0]
    if (size < BLOCKED_NORM_MIN_SIZE or rows < 2
            or jax.default_backend() not in BLOCKED_NORM_BACKENDS):
        return block_sums(inputs)
    per_block = min(rows, max(1, BLOCK_ELEMENTS // (size // rows)))
    blocks, tail = divmod(rows, per_block)
    sums = jax.lax.fori_loop(
        0, blocks,
        lambda i, acc: acc + block_sums(_row_block(inputs, i * per_block, per_block, rows)),
        jnp.zeros((len(index),), jnp.float32))
    if tail:
        sums = sums + block_sums(_row_block(inputs, blocks * per_block, tail, rows))
    return sums


def _norm_scales(inputs: dict[str, Any], feats: list[jax.Array], config: Config,
                 shape: tuple[int, ...]) -> jax.Array:
    """1 / sqrt(eps + mean(x^2)) per feature. A broadcast statistic has the mean of its
    reduced form, so those means are taken before broadcasting (cheaper, same value)."""
    full = [k for k, f in enumerate(feats) if f.shape == tuple(shape)]
    means = {k: jnp.mean(jnp.square(f)) for k, f in enumerate(feats) if k not in full}
    if full:
        sums = _sums_of_squares(inputs, config, full, shape)
        means.update({k: sums[i] / np.prod(shape) for i, k in enumerate(full)})
    return jax.lax.rsqrt(NORM_EPS + jnp.stack([means[k] for k in range(len(feats))]))


# The unrolled network is one expression per term; XLA's compile time and memory grow with
# the number of terms. Measured on the standard task's MLP (2-core CPU, 24 GB): 16 x 16 hidden
# units (704 terms) compiled in under a minute, 32 x 32 (1,920 terms) exhausted the memory while
# compiling. Above this many terms ``auto`` takes the stacked path instead.
MAX_UNROLLED_TERMS = 1000


def unrolled_terms(config: Config) -> int:
    """Scalar * tensor terms of the unrolled network (first layer plus hidden-to-hidden)."""
    return (num_features(config) * config.hidden_size
            + config.hidden_size ** 2 * max(config.hidden_layers - 1, 0))


def resolve_path(config: Config) -> str:
    """``auto`` becomes the measured faster path for the current backend, unless the network is
    too wide to unroll."""
    if config.path != "auto":
        return config.path
    if unrolled_terms(config) > MAX_UNROLLED_TERMS:
        return "stacked"
    return DEFAULT_PATH.get(jax.default_backend(), "unrolled")


def to_optax(theta: dict[str, Any], config: Config = Config()
             ) -> optax.GradientTransformationExtraArgs:
    """The learned optimizer with meta-parameters ``theta`` as an optax transformation."""
    need_m, need_r, need_f = _needs(config)
    n_m, n_r, n_f = (len(config.momentum_decays), len(config.rms_decays),
                     len(config.adafactor_decays))
    stacked = resolve_path(config) == "stacked"

    def init(params) -> SmallFcState:
        leaves = jax.tree.leaves(params)
        return SmallFcState(
            count=jnp.zeros((), jnp.int32),
            momenta=tuple(jnp.zeros((n_m, *p.shape), p.dtype) for p in leaves) if need_m else (),
            rms=tuple(jnp.zeros((n_r, *p.shape), p.dtype) for p in leaves) if need_r else (),
            factored=tuple(_init_factored(p, n_f) for p in leaves) if need_f else (),
        )

    def update(grads, state: SmallFcState, params=None, **extra_args):
        del extra_args  # small_fc_lopt does not use the loss
        params = require_params(NAME, params)
        b_m = learned_decays(config.momentum_decays, theta["momentum_offsets"], clip=False)
        b_r = learned_decays(config.rms_decays, theta["rms_offsets"], clip=True)
        b_f = learned_decays(config.adafactor_decays, theta["adafactor_offsets"], clip=True)
        time = time_features(state.count) if config.use_time else None
        g_leaves, treedef = jax.tree.flatten(grads)
        p_leaves = treedef.flatten_up_to(params)
        new_m, new_r, new_f, updates = [], [], [], []
        for i, (g, p) in enumerate(zip(g_leaves, p_leaves)):
            def ema(acc, decays, x):
                shape = (-1,) + (1,) * x.ndim
                return decays.reshape(shape) * acc + (1 - decays.reshape(shape)) * x[None]

            m = ema(state.momenta[i], b_m, g) if need_m else None
            r = ema(state.rms[i], b_r, jnp.square(g)) if need_r else None
            f = None
            if need_f:
                dims = factored_dims(g.shape)
                if dims is None:
                    f = (ema(state.factored[i][0], b_f, jnp.square(g) + 1e-30),)
                else:
                    # Each mean squares the gradient itself: were the square shared, XLA:CPU
                    # would write it out in full for the two reductions to read back (17-20 ms
                    # of a ~110 ms update at 10M parameters). The epsilon joins after the mean
                    # (the same value up to rounding) for the same reason: inside, XLA:CPU
                    # materialises it as a full-size array.
                    f = tuple(ema(state.factored[i][j], b_f, jnp.mean(
                        jnp.square(_private_copy(g, j)), axis=dims[j]) + 1e-30)
                        for j in (0, 1))
            inputs = _tensor_inputs(g, p, m, r, f)
            feats = _features(inputs, config)
            if stacked:
                direction, magnitude = network_stacked(theta["network"], feats, time, g.shape)
            else:
                scales = _norm_scales(inputs, feats, config, g.shape)
                direction, magnitude = network_unrolled(theta["network"], feats, scales, time,
                                                         g.shape)
            step = direction * jnp.exp(magnitude * config.exp_mult) * config.step_mult
            updates.append((-step).astype(p.dtype))
            new_m.append(m)
            new_r.append(r)
            new_f.append(f)
        new_state = SmallFcState(
            count=optax.safe_int32_increment(state.count),
            momenta=tuple(new_m) if need_m else (),
            rms=tuple(new_r) if need_r else (),
            factored=tuple(new_f) if need_f else (),
        )
        return jax.tree.unflatten(treedef, updates), new_state

    return optax.GradientTransformationExtraArgs(init, update)
