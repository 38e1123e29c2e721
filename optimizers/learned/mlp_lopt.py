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
parameter (stored along a trailing axis of size 6) and an int32 step counter: 6 floats/param.

Implementation note: the per-tensor normalisation scale and the time features are constant
across a tensor, so they are folded into the first layer (scaled weights, and a bias that
absorbs the time features) instead of being multiplied into, or tiled onto, every parameter's
feature vector. This is exact up to float32 rounding and saves 11 floats per parameter of
temporaries.
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


@dataclasses.dataclass(frozen=True)
class Config:
    """mlp_lopt's settings; defaults are the reference architecture's."""

    momentum_decays: tuple[float, ...] = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)
    hidden_size: int = 32
    hidden_layers: int = 2
    exp_mult: float = 0.001
    step_mult: float = 0.001

    def __post_init__(self) -> None:
        common.tuple_fields(self)

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


def to_optax(theta: list[dict[str, jax.Array]],
             config: Config = Config()) -> optax.GradientTransformationExtraArgs:
    """mlp_lopt with meta-parameters ``theta`` as an optax transformation."""
    decays = jnp.asarray(config.momentum_decays, jnp.float32)

    def init(params: Any) -> MLPLOptState:
        momenta = jax.tree.map(
            lambda p: jnp.zeros(jnp.shape(p) + (len(config.momentum_decays),),
                                jnp.result_type(p)), params)
        return MLPLOptState(count=jnp.zeros([], jnp.int32), momenta=momenta)

    def update_tensor(g, p, m, time):
        g32 = g.astype(jnp.float32)
        m_new = decays * m.astype(jnp.float32) + (1.0 - decays) * g32[..., None]
        feats = jnp.concatenate(
            [g32[..., None], p.astype(jnp.float32)[..., None], m_new], axis=-1)
        first = common.fold_first_layer(theta[0], common.second_moment_scale(feats), time)
        out = common.apply_mlp(theta, feats, first)
        step = out[..., 0] * jnp.exp(out[..., 1] * config.exp_mult) * config.step_mult
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
