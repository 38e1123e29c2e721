"""mlp_lopt: Metz et al.'s per-parameter MLP learned optimizer ("LOLv2").

Source: Metz, Maheswaranathan, Nixon, Freeman, Sohl-Dickstein, "Understanding and correcting
pathologies in the training of learned optimizers" (ICML 2019, arXiv 1810.10180), as
implemented in the reference code base google/learned_optimization (``MLPLOpt``). Facts taken
from there (no code): six momentum accumulators with fixed decays (0.1, 0.5, 0.9, 0.99, 0.999,
0.9999), updated with the current gradient before the features are computed; per-parameter
inputs g, p and the six momenta, second-moment normalised per tensor, followed by the 11 tanh
time features of the number of updates done before this one (19 inputs); an MLP 19 -> 32 ->
32 -> 2 with ReLU, truncated-normal weights of std 1/sqrt(fan_in) and zero biases; the output
parameterisation step = d * exp(m * exp_mult) * step_mult with exp_mult = step_mult = 0.001
(the same as small_fc_lopt's), p <- p - step.

Meta-parameters at defaults: 19*32+32 + 32*32+32 + 32*2+2 = 1,762. State: the six momenta per
parameter (stored along a leading axis of size 6) and an int32 step counter: 6 floats/param.

Implementation note: the per-tensor normalisation scale and the time features are constant
across a tensor, so they are folded into the first layer (scaled weights, and a bias that
absorbs the time features) instead of being multiplied into, or tiled onto, every parameter's
feature vector. This is exact up to float32 rounding and saves 11 floats per parameter of
temporaries.

Two execution paths compute the same update: ``stacked`` builds the [N, 8] feature stack and
the [N, 32] hidden activations of the whole tensor; ``blocked`` (the fast one on a CPU) takes
the tensor BLOCK_ROWS elements at a time in a loop, building each block's features as rows,
running the network on them and writing its steps and new momenta in place, so no full-size
feature or activation array exists.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers.learned import common

NAME = "mlp_lopt"
NUM_TIME_FEATURES = len(common.TIME_SCALES)
PATHS = ("stacked", "blocked")
# The faster path per backend, measured with `make bench` (mlp_lopt/stacked and /blocked rows);
# GPUs have not been measured, and there the stacked path's large matrix products are the
# safer guess.
DEFAULT_PATH = {"cpu": "blocked"}
# Elements per block of the blocked path, measured on a 2-core CPU: [32, 32768] activations.
BLOCK_ROWS = 32768


@dataclasses.dataclass(frozen=True)
class Config:
    """mlp_lopt's settings; defaults are the reference architecture's."""

    momentum_decays: tuple[float, ...] = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)
    hidden_size: int = 32
    hidden_layers: int = 2
    exp_mult: float = 0.001
    step_mult: float = 0.001
    path: str = "auto"  # stacked, blocked, or auto: the faster one on this backend

    def __post_init__(self) -> None:
        common.tuple_fields(self)
        if self.path not in (*PATHS, "auto"):
            raise ValueError(f"optimizer.path={self.path!r}: expected one of {PATHS} or 'auto'")

    @property
    def num_inputs(self) -> int:
        """g, p, one per momentum, then the time features."""
        return 2 + len(self.momentum_decays) + NUM_TIME_FEATURES


class MLPLOptState(NamedTuple):
    count: jax.Array  # int32: updates done so far
    momenta: Any  # per parameter tensor: shape p.shape + (len(momentum_decays),)


def init_meta(key: jax.Array, config: Config = Config()) -> list[dict[str, jax.Array]]:
    """The MLP's dense layers, reference initialisation (common.init_mlp)."""
    sizes = [config.num_inputs] + [config.hidden_size] * config.hidden_layers + [2]
    return common.init_mlp(key, sizes)


def resolve_path(config: Config) -> str:
    """``auto`` becomes the measured faster path for the current backend."""
    if config.path != "auto":
        return config.path
    return DEFAULT_PATH.get(jax.default_backend(), "stacked")


def _momenta(m: jax.Array, g: jax.Array, decays: jax.Array) -> jax.Array:
    """The momenta [K, ...] after this gradient, float32, one row per decay."""
    shape = (-1,) + (1,) * g.ndim
    return (decays.reshape(shape) * m.astype(jnp.float32)
            + (1.0 - decays.reshape(shape)) * g.astype(jnp.float32)[None])


def _output_step(direction: jax.Array, magnitude: jax.Array, config: Config) -> jax.Array:
    return direction * jnp.exp(magnitude * config.exp_mult) * config.step_mult


def _stacked_steps(theta, first, g, p, m_new, config: Config) -> jax.Array:
    """Every element's step from the [..., 8] stack of its raw features (first layer folded)."""
    feats = jnp.concatenate([g.astype(jnp.float32)[..., None],
                             p.astype(jnp.float32)[..., None], jnp.moveaxis(m_new, 0, -1)],
                            axis=-1)
    out = common.apply_mlp(theta, feats, first)
    return _output_step(out[..., 0], out[..., 1], config)


def _blocked_steps(theta, first, g, p, m_new, config: Config) -> jax.Array:
    """Steps of one tensor, BLOCK_ROWS elements at a time (see the module docstring), each
    block's features as rows [8, B]; the new momenta are the state's output anyway, so they
    are written out once before the loop and the loop writes only the steps."""
    n, k = g.size, m_new.shape[0]
    g1, p1, m1 = g.reshape(n), p.reshape(n), m_new.reshape(k, n)

    def block(start, length):
        take = lambda x, axis=0: jax.lax.dynamic_slice_in_dim(x, start, length, axis)  # noqa: E731
        rows = jnp.concatenate([take(g1).astype(jnp.float32)[None],
                                take(p1).astype(jnp.float32)[None], take(m1, 1)], axis=0)
        out = common.apply_mlp_columns(theta, rows, first)
        return _output_step(out[0], out[1], config), jnp.zeros((0,), jnp.float32)

    steps, _ = common.over_blocks(n, BLOCK_ROWS, block, 0)
    return steps.reshape(g.shape)


def to_optax(theta: list[dict[str, jax.Array]],
             config: Config = Config()) -> optax.GradientTransformationExtraArgs:
    """mlp_lopt with meta-parameters ``theta`` as an optax transformation."""
    decays = jnp.asarray(config.momentum_decays, jnp.float32)
    blocked = resolve_path(config) == "blocked"

    def init(params: Any) -> MLPLOptState:
        momenta = jax.tree.map(
            lambda p: jnp.zeros((len(config.momentum_decays), *jnp.shape(p)),
                                jnp.result_type(p)), params)
        return MLPLOptState(count=jnp.zeros([], jnp.int32), momenta=momenta)

    def update_tensor(g, p, m, time):
        m_new = _momenta(m, g, decays)
        axes = tuple(range(g.ndim))
        mean_squares = jnp.concatenate([
            jnp.stack([jnp.mean(jnp.square(g.astype(jnp.float32))),
                       jnp.mean(jnp.square(p.astype(jnp.float32)))]),
            jnp.mean(jnp.square(m_new), axis=tuple(a + 1 for a in axes))])
        scale = jax.lax.rsqrt(common.NORM_EPS + mean_squares)
        first = common.fold_first_layer(theta[0], scale, time)
        steps = _blocked_steps if blocked and g.size >= BLOCK_ROWS else _stacked_steps
        step = steps(theta, first, g, p, m_new, config)
        return (-step).astype(p.dtype), m_new.astype(m.dtype)

    def update(grads: Any, state: MLPLOptState, params: Any = None, *, value: Any = None,
               **extra: Any) -> tuple[Any, MLPLOptState]:
        del value, extra  # mlp_lopt does not use the loss
        common.require_params(NAME, params)
        time = common.time_features(state.count)
        leaves, treedef = jax.tree.flatten(grads)
        outs = [update_tensor(g, p, m, time) for g, p, m in
                zip(leaves, treedef.flatten_up_to(params),
                    treedef.flatten_up_to(state.momenta))]
        updates = treedef.unflatten([u for u, _ in outs])
        momenta = treedef.unflatten([m for _, m in outs])
        return updates, MLPLOptState(count=state.count + 1, momenta=momenta)

    return optax.GradientTransformationExtraArgs(init, update)
