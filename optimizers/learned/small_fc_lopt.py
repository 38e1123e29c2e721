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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers.learned.common import (
    init_mlp,
    learned_decays,
    require_params,
    time_features,
)
from optimizers.learned.networks import network_stacked, network_unrolled
from optimizers.learned.small_fc_features import (
    factored_dims,
    features,
    init_factored,
    needs,
    num_features,
    tensor_inputs,
)
from optimizers.learned.small_fc_normalisation import (
    NORMALISATIONS,
    full_features,
    lagged_steps,
    norm_scales,
    private_copy,
    subsampled_scales,
)

NAME = "small_fc_lopt"
PATHS = ("stacked", "unrolled")
# The faster path per backend, measured with `make bench` (small_fc_lopt/stacked and /unrolled
# rows): on a 2-core CPU 2.29 s stacked vs 96 ms unrolled at 10M parameters, 217 ms vs 12 ms at
# 1M; on an H100 (before the blocked normalisation sums), 72 ms vs 5.8 ms at 100M and 1.10 ms
# vs 0.37 ms at 1M.
DEFAULT_PATH = {"cpu": "unrolled", "gpu": "unrolled"}
# The faster design options, benchmarked beside the paths by `make bench`.
NO_FACTORED = {"use_factored": False, "use_factored_momenta": False}
# A linear learned optimizer on 5 features (gradient, one momentum, rms, rsqrt(rms), momentum *
# rsqrt(rms)) and the time features: state 2 floats per parameter.
LINEAR = {**NO_FACTORED, "momentum_decays": [0.99], "hidden_layers": 0, "use_param": False}
BENCHMARKED_OPTIONS = {"subsampled": {"normalisation": "subsampled"},
                       "lagged": {"normalisation": "lagged"},
                       "no_factored": NO_FACTORED,
                       "no_factored_subsampled": {**NO_FACTORED, "normalisation": "subsampled"},
                       # 6 features, one momentum, 2 hidden units: state 2 floats per parameter
                       "lean": {**NO_FACTORED, "momentum_decays": [0.9], "hidden_size": 2,
                                "hidden_layers": 1},
                       "linear": LINEAR,
                       "linear_subsampled": {**LINEAR, "normalisation": "subsampled"}}


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
    normalisation: str = "exact"    # exact, subsampled or lagged (small_fc_normalisation)
    norm_stride: int = 16           # subsampled: about one element in norm_stride

    def __post_init__(self) -> None:
        if self.path not in (*PATHS, "auto"):
            raise ValueError(f"optimizer.path={self.path!r}: expected one of {PATHS} or 'auto'")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"optimizer.normalisation={self.normalisation!r}: expected one of "
                             f"{NORMALISATIONS}")
        if self.normalisation != "exact" and self.path == "stacked":
            raise ValueError(f"optimizer.normalisation={self.normalisation!r} runs on the "
                             "unrolled path only: set optimizer.path=unrolled or auto")
        if self.norm_stride < 1:
            raise ValueError(f"optimizer.norm_stride={self.norm_stride}: need at least 1")
        if self.hidden_size < 1 or self.hidden_layers < 0:
            raise ValueError(f"optimizer.hidden_size={self.hidden_size}, hidden_layers="
                             f"{self.hidden_layers}: need hidden_size >= 1, hidden_layers >= 0")
        if num_features(self) == 0:
            raise ValueError("small_fc_lopt config leaves no input features")


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
    # normalisation=lagged: per tensor, the last step's mean square of each full-size feature
    norm_means: tuple[jax.Array, ...] = ()


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
    if unrolled_terms(config) > MAX_UNROLLED_TERMS and config.normalisation == "exact":
        return "stacked"
    return DEFAULT_PATH.get(jax.default_backend(), "unrolled")


def to_optax(theta: dict[str, Any], config: Config = Config()
             ) -> optax.GradientTransformationExtraArgs:
    """The learned optimizer with meta-parameters ``theta`` as an optax transformation."""
    need_m, need_r, need_f = needs(config)
    n_m, n_r, n_f = (len(config.momentum_decays), len(config.rms_decays),
                     len(config.adafactor_decays))
    stacked = resolve_path(config) == "stacked"

    lagged = config.normalisation == "lagged"

    def ema(acc, decays, x):
        shape = (-1,) + (1,) * x.ndim
        return decays.reshape(shape) * acc + (1 - decays.reshape(shape)) * x[None]

    def accumulate(g, momenta, rms, factored, decays):
        """The accumulators after gradient ``g`` (None where no feature reads them)."""
        b_m, b_r, b_f = decays
        m = ema(momenta, b_m, g) if need_m else None
        r = ema(rms, b_r, jnp.square(g)) if need_r else None
        f = None
        if need_f:
            dims = factored_dims(g.shape)
            if dims is None:
                f = (ema(factored[0], b_f, jnp.square(g) + 1e-30),)
            else:
                # Each mean squares the gradient itself: were the square shared, XLA:CPU
                # would write it out in full for the two reductions to read back (17-20 ms
                # of a ~110 ms update at 10M parameters). The epsilon joins after the mean
                # (the same value up to rounding) for the same reason: inside, XLA:CPU
                # materialises it as a full-size array.
                f = tuple(ema(factored[j], b_f, jnp.mean(
                    jnp.square(private_copy(g, j)), axis=dims[j]) + 1e-30) for j in (0, 1))
        return m, r, f

    def decays():
        return (learned_decays(config.momentum_decays, theta["momentum_offsets"], clip=False),
                learned_decays(config.rms_decays, theta["rms_offsets"], clip=True),
                learned_decays(config.adafactor_decays, theta["adafactor_offsets"], clip=True))

    def init(params) -> SmallFcState:
        leaves = jax.tree.leaves(params)
        state = SmallFcState(
            count=jnp.zeros((), jnp.int32),
            momenta=tuple(jnp.zeros((n_m, *p.shape), p.dtype) for p in leaves) if need_m else (),
            rms=tuple(jnp.zeros((n_r, *p.shape), p.dtype) for p in leaves) if need_r else (),
            factored=tuple(init_factored(p, n_f) for p in leaves) if need_f else (),
        )
        if not lagged:
            return state

        def full_count(i, p):
            def feats():
                g = jnp.zeros(p.shape, jnp.float32)
                acc = accumulate(g, *(x[i] if x else None for x in state[1:4]), decays())
                return features(tensor_inputs(g, p, *acc), config)
            return len(full_features(jax.eval_shape(feats), p.shape))

        return state._replace(norm_means=tuple(
            jnp.zeros((full_count(i, p),), jnp.float32) for i, p in enumerate(leaves)))

    def output(direction, magnitude):
        return direction * jnp.exp(magnitude * config.exp_mult) * config.step_mult

    def update(grads, state: SmallFcState, params=None, **extra_args):
        del extra_args  # small_fc_lopt does not use the loss
        params = require_params(NAME, params)
        rates = decays()
        time = time_features(state.count) if config.use_time else None
        g_leaves, treedef = jax.tree.flatten(grads)
        p_leaves = treedef.flatten_up_to(params)
        new_m, new_r, new_f, new_means, updates = [], [], [], [], []
        for i, (g, p) in enumerate(zip(g_leaves, p_leaves)):
            m, r, f = accumulate(g, *(x[i] if x else None for x in state[1:4]), rates)
            inputs = tensor_inputs(g, p, m, r, f)
            feats = features(inputs, config)
            if stacked:
                step = output(*network_stacked(theta["network"], feats, time, g.shape))
            elif lagged:
                step, means = lagged_steps(theta["network"], inputs, feats, config, g.shape,
                                           time, state.norm_means[i], state.count == 0, output)
                new_means.append(means)
            else:
                scales = (subsampled_scales if config.normalisation == "subsampled"
                          else norm_scales)(inputs, feats, config, g.shape)
                step = output(*network_unrolled(theta["network"], feats, scales, time,
                                                g.shape))
            updates.append((-step).astype(p.dtype))
            new_m.append(m)
            new_r.append(r)
            new_f.append(f)
        new_state = SmallFcState(
            count=optax.safe_int32_increment(state.count),
            momenta=tuple(new_m) if need_m else (),
            rms=tuple(new_r) if need_r else (),
            factored=tuple(new_f) if need_f else (),
            norm_means=tuple(new_means),
        )
        return jax.tree.unflatten(treedef, updates), new_state

    return optax.GradientTransformationExtraArgs(init, update)
