"""small_fc_lopt's per-parameter features: which accumulators a design needs, what each
tensor's features are computed from, and the features themselves, in the reference code
base's order (google/learned_optimization, ``AdafacMLPLOpt``)."""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optimizers.learned.common import safe_rsqrt


def pairs(a: int, b: int) -> list[tuple[int, int]]:
    """Index pairs for product features: matched one to one when the counts agree (the
    reference's layout), all combinations otherwise."""
    if a == b:
        return list(zip(range(a), range(b)))
    return list(itertools.product(range(a), range(b)))


def needs(config: Any) -> tuple[bool, bool, bool]:
    """Which accumulators some feature reads: (momenta, rms, factored)."""
    n_m, n_r, n_f = (len(config.momentum_decays), len(config.rms_decays),
                     len(config.adafactor_decays))
    momenta = n_m > 0 and (config.use_momenta or (config.use_rms_momenta and n_r > 0)
                           or (config.use_factored_momenta and n_f > 0))
    rms = n_r > 0 and (config.use_rms or (config.use_rms_momenta and n_m > 0))
    factored = n_f > 0 and (config.use_factored or (config.use_factored_momenta and n_m > 0))
    return momenta, rms, factored


def num_features(config: Any) -> int:
    """Per-parameter accumulator features (time features excluded)."""
    n_m, n_r, n_f = (len(config.momentum_decays), len(config.rms_decays),
                     len(config.adafactor_decays))
    return (1 + config.use_param + n_m * config.use_momenta + 2 * n_r * config.use_rms
            + len(pairs(n_m, n_r)) * config.use_rms_momenta * (n_m > 0 and n_r > 0)
            + 5 * n_f * config.use_factored
            + len(pairs(n_m, n_f)) * config.use_factored_momenta * (n_m > 0 and n_f > 0))


def factored_dims(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """(d0, d1): the largest and second-largest axes (a stable sort, so for equal sizes d0 is
    the later axis), or None for tensors of rank < 2, which are not factored."""
    if len(shape) < 2:
        return None
    order = np.argsort(shape, kind="stable")
    return int(order[-1]), int(order[-2])


def init_factored(p: jax.Array, n: int) -> tuple[jax.Array, ...]:
    dims = factored_dims(p.shape)
    if dims is None:
        return (jnp.zeros((n, *p.shape), p.dtype),)
    d0, d1 = dims
    row = [s for i, s in enumerate(p.shape) if i != d0]
    col = [s for i, s in enumerate(p.shape) if i != d1]
    return jnp.zeros((n, *row), p.dtype), jnp.zeros((n, *col), p.dtype)


def tensor_inputs(g, p, momenta, rms, factored) -> dict[str, Any]:
    """What the features of one tensor are computed from: full-size arrays (gradient,
    parameter, accumulators stacked on a leading decay axis) and, for the factored
    accumulators, per-decay statistics already reduced and expanded to the tensor's rank.

    Every array here is elementwise-aligned with the tensor along axis 0 (axis 1 for the
    stacked accumulators) or broadcast along it, so a block of rows of the features is the
    features of the same block of rows of these inputs (``small_fc_normalisation.row_block``)."""
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


def features(inputs: dict[str, Any], config: Any) -> list[jax.Array]:
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
        feats += [m[i] * rsqrt_rms[j] for i, j in pairs(len(m), len(r))]
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
        feats += [m[i] * precond[k] for i, k in pairs(len(m), len(precond))]
    return feats
