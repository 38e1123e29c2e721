"""rnn_mlp_lopt: a per-tensor LSTM conditioning a per-parameter MLP (Metz et al. 2020).

Source: Metz, Maheswaranathan, Freeman, Poole, Sohl-Dickstein, "Tasks, stability,
architecture, and compute: training more effective learned optimizers, and using them to
train themselves" (arXiv 2009.11243), as implemented in the reference code base
google/learned_optimization (``RNNMLPLOpt``). Facts taken from there (no code):

* Gradients first pass a dynamic clipper: with s an EMA (0.99, starting at 0.01 = 1 * (1 -
  0.99)) of sqrt(1e-8 + mean over tensors of mean(g^2)), g is clipped to
  +-10 * s / (1 - 0.99^t), t = 1, 2, ... (so +-10 at the first step), then s is updated.
* Accumulators, decays (0.5, 0.9, 0.99, 0.999, 0.9999), current gradient included: 5 momenta
  m <- b m + (1 - b) g and 5 second moments v <- b v + (1 - b) g^2 (10 floats/param).
* The training loss is tracked by an EMA of mean and variance (decay 0.9, bias-corrected) and
  fed as clip((loss - mean) / sqrt(var + 1e-8), -5, 5). The reference also tracks a
  validation loss (decay 0.95) that only moves when it is handed validation batches; in an
  optax update there are none, so its accumulator stays at zero and its feature is the
  training normaliser applied to a loss of 0, which is what we feed (and so keep no state).
* Per-tensor LSTM (hidden 64; the haiku cell shared with nn_adam, forget bias +1) with 52
  inputs: 18 tensor features (log-magnitude clip(log(1e-8 + |x|), -5, 5) and sign of the
  mean of all momenta, log-magnitude of their variance; the same three for the second
  moments, with the sign of mean(v); and for the parameters; log-magnitudes of ||p|| and
  ||g||; an is-scalar flag +-1; log of the first four dimensions (padded with 1) minus 1; the
  two loss features), 16 values from the per-parameter MLP at the previous step ("from_mlp")
  and 18 from all tensors' LSTM outputs at the previous step ("from_lstm", a linear 64 -> 18
  averaged over tensors, DeepSets style). The first step uses learned initial values.
* Per-parameter MLP 54 -> 32 -> 32 -> 18 (ReLU): 23 second-moment normalised inputs, g, p,
  log(|p| + 1e-8), 5 momenta, 5 m * rsqrt(v + 1e-6), 5 v, 5 rsqrt(v + 1e-6); 14 unnormalised
  context inputs, 11 time features sin(t / (pi * tau)) for the usual 11 timescales tau (this
  architecture's, not the tanh ones of the others), log(number of tensors) - 1,
  log(||p|| + 1e-8), log(number of elements); and 17 from the tensor's LSTM output (linear
  64 -> 17). Outputs 0 and 1 are direction and magnitude, step = d * exp(m * exp_mult) *
  step_mult, exp_mult = step_mult = 0.001, p <- p - step. The other 16 outputs are averaged
  over the tensor and become its "from_mlp" LSTM inputs at the next step, as in the
  reference.
* Initialisation: dense layers truncated normal std 1/sqrt(fan_in), zero biases; LSTM
  initial state zeros; initial from_mlp / from_lstm truncated normal (variance scaling 1,
  fan_in = their size).

Meta-parameters at defaults, 35,799 (the reference's count):
  lstm  w [52 + 64, 256] + b [256]         29,952
  h0, c0 [64] each                            128
  lstm -> mlp  w [64, 17] + b [17]          1,105
  lstm -> lstm w [64, 18] + b [18]          1,170
  mlp 54 -> 32 -> 32 -> 18                  3,410
  initial from_mlp [16], from_lstm [18]        34

State: 10 floats/param, per tensor (h, c) and from_mlp (144 floats), from_lstm (18), the loss
EMA (2), the clipper's EMA (1) and an int32 step counter: 10.009 floats/param on a 256x128
weight plus its bias. The clipper's step and the loss normaliser's count equal the counter
plus one (every update is a training update), so they are not stored.

Implementation note: the normalisation scale and the per-tensor context (14 + 17 inputs) are
folded into the MLP's first layer (see mlp_lopt), exact up to float32 rounding. Two execution
paths compute the same update: ``stacked`` builds the tensor's [N, 23] feature stack and its
[N, 32] activations; ``blocked`` takes BLOCK_ROWS elements at a time, once for the
normalisation sums (each feature group's on its own) and once for the network (each block's
features as rows [23, B]), so no full-size feature or activation array exists (as mlp_lopt's
blocked path).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers.learned import common
from optimizers.learned.common import (
    apply_mlp,
    fold_first_layer,
    second_moment_scale,
    tuple_fields,
)
from optimizers.learned.lstm import init_lstm, lstm_cell

NAME = "rnn_mlp_lopt"
NUM_TENSOR_FEATURES = 18
NUM_CONTEXT = len(common.TIME_SCALES) + 3
TRUNC_STD = 0.87962566103423978  # std of a standard normal truncated to [-2, 2]
PATHS = ("stacked", "blocked")
# The faster path per backend, measured with `make bench` (rnn_mlp_lopt/stacked and /blocked
# rows); GPUs have not been measured, and there the stacked path's large matrix products are
# the safer guess.
DEFAULT_PATH = {"cpu": "blocked"}
# Elements per block of the blocked path (mlp_lopt's, measured on a 2-core CPU).
BLOCK_ROWS = 32768


@dataclasses.dataclass(frozen=True)
class Config:
    """rnn_mlp_lopt's settings; defaults are the reference architecture's."""

    decays: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999, 0.9999)
    hidden_size: int = 32
    hidden_layers: int = 2
    lstm_hidden_size: int = 64
    from_mlp_size: int = 16
    from_lstm_size: int = 18
    lstm_to_ff: int = 17
    exp_mult: float = 0.001
    step_mult: float = 0.001
    loss_decay: float = 0.9
    clip_decay: float = 0.99
    clip_mult: float = 10.0
    path: str = "auto"  # stacked, blocked, or auto: the faster one on this backend

    def __post_init__(self) -> None:
        tuple_fields(self)
        if self.path not in (*PATHS, "auto"):
            raise ValueError(f"optimizer.path={self.path!r}: expected one of {PATHS} or 'auto'")

    @property
    def num_normalised(self) -> int:
        return 3 + 4 * len(self.decays)

    @property
    def mlp_inputs(self) -> int:
        return self.num_normalised + NUM_CONTEXT + self.lstm_to_ff

    @property
    def lstm_inputs(self) -> int:
        return NUM_TENSOR_FEATURES + self.from_mlp_size + self.from_lstm_size


class RNNMLPLOptState(NamedTuple):
    count: jax.Array  # int32: updates done so far
    m: Any  # per parameter tensor: p.shape + (len(decays),)
    v: Any  # per parameter tensor: p.shape + (len(decays),)
    lstm_h: jax.Array  # [num_tensors, lstm_hidden_size]
    lstm_c: jax.Array  # [num_tensors, lstm_hidden_size]
    from_mlp: jax.Array  # [num_tensors, from_mlp_size]
    from_lstm: jax.Array  # [from_lstm_size]
    loss_mean: jax.Array  # EMA of the training loss
    loss_var: jax.Array  # EMA of its squared deviation
    clip_ema: jax.Array  # the dynamic clipper's EMA of gradient RMS


def clip_log_abs(x: jax.Array) -> jax.Array:
    return jnp.clip(jnp.log(1e-8 + jnp.abs(x)), -5.0, 5.0)


def sin_time_features(step: jax.Array) -> jax.Array:
    """[11] features sin(t / (pi * tau)) of the number of updates done before this one."""
    t = jnp.asarray(step, jnp.float32)
    return jnp.sin(t / (jnp.asarray(common.TIME_SCALES, jnp.float32) * jnp.pi))


def tensor_features(p: jax.Array, g: jax.Array, m: jax.Array, v: jax.Array,
                    loss_feats: jax.Array) -> jax.Array:
    """The 18 LSTM features of one tensor (see the module docstring)."""
    shape = (list(p.shape) + [1] * 4)[:4]
    stats = []
    for x in (m, v, p):
        mean = jnp.mean(x)
        stats += [clip_log_abs(mean), jnp.sign(mean), clip_log_abs(jnp.mean(jnp.square(x - mean)))]
    return jnp.concatenate([
        jnp.stack(stats + [clip_log_abs(jnp.linalg.norm(p)), clip_log_abs(jnp.linalg.norm(g)),
                           jnp.asarray(1.0 if p.ndim == 0 else -1.0, jnp.float32)]),
        jnp.log(jnp.asarray(shape, jnp.float32)) - 1.0,
        loss_feats,
    ])


def resolve_path(config: Config) -> str:
    """``auto`` becomes the measured faster path for the current backend."""
    if config.path != "auto":
        return config.path
    return DEFAULT_PATH.get(jax.default_backend(), "stacked")


def _feature_rows(g, p32, m, v):
    """A function of (start, length) giving those elements' 23 MLP features as rows [23, B],
    in the stacked path's order (g, p, log|p|, m, m * rsqrt(v), v, rsqrt(v))."""
    n, k = g.size, m.shape[-1]
    g1, p1, m1, v1 = g.reshape(n), p32.reshape(n), m.reshape(n, k), v.reshape(n, k)

    def rows(start, length):
        take = lambda x: jax.lax.dynamic_slice_in_dim(x, start, length, 0)  # noqa: E731
        gb, pb, mb, vb = take(g1), take(p1), take(m1).T, take(v1).T
        rsq = jax.lax.rsqrt(vb + 1e-6)
        return common.stack_rows(
            [gb[None], pb[None], jnp.log(jnp.abs(pb) + 1e-8)[None], mb, mb * rsq, vb, rsq])

    return rows


def _normalisation_sums(g, p32, m, v):
    """The 23 features' sums of squares, in ``_feature_rows``' order, BLOCK_ROWS elements at a
    time: each group's sums on its own, the momenta's over their stored [B, 5] layout, since
    the rows' concatenation and transposes cost XLA:CPU three times as much as the sums."""
    n, k = g.size, m.shape[-1]
    g1, p1, m1, v1 = g.reshape(n), p32.reshape(n), m.reshape(n, k), v.reshape(n, k)

    def sums(start, length):
        take = lambda x: jax.lax.dynamic_slice_in_dim(x, start, length, 0)  # noqa: E731
        gb, pb, mb, vb = take(g1), take(p1), take(m1), take(v1)
        rsq = jax.lax.rsqrt(vb + 1e-6)
        square_sum = lambda x, axis=None: jnp.sum(jnp.square(x), axis=axis)  # noqa: E731
        singles = [square_sum(gb), square_sum(pb), square_sum(jnp.log(jnp.abs(pb) + 1e-8))]
        return None, jnp.concatenate([jnp.stack(singles), square_sum(mb, 0),
                                      square_sum(mb * rsq, 0), square_sum(vb, 0),
                                      square_sum(rsq, 0)])

    return common.over_blocks(n, BLOCK_ROWS, sums, 3 + 4 * k, values=False)[1]


def _truncated(key: jax.Array, size: int) -> jax.Array:
    return jax.random.truncated_normal(key, -2.0, 2.0, (size,)) / (TRUNC_STD * math.sqrt(size))


def init_meta(key: jax.Array, config: Config = Config()) -> dict[str, Any]:
    """LSTM, its projections, the per-parameter MLP and the initial conditioning values."""
    keys = jax.random.split(key, 6)
    hidden = config.lstm_hidden_size
    sizes = [config.mlp_inputs] + [config.hidden_size] * config.hidden_layers
    return {
        "lstm": init_lstm(keys[0], config.lstm_inputs, hidden),
        "h0": jnp.zeros((hidden,), jnp.float32),
        "c0": jnp.zeros((hidden,), jnp.float32),
        "to_mlp": common.init_mlp(keys[1], [hidden, config.lstm_to_ff])[0],
        "to_lstm": common.init_mlp(keys[2], [hidden, config.from_lstm_size])[0],
        "mlp": common.init_mlp(keys[3], sizes + [2 + config.from_mlp_size]),
        "from_mlp0": _truncated(keys[4], config.from_mlp_size),
        "from_lstm0": _truncated(keys[5], config.from_lstm_size),
    }


def to_optax(theta: dict[str, Any],
             config: Config = Config()) -> optax.GradientTransformationExtraArgs:
    """rnn_mlp_lopt with meta-parameters ``theta`` as an optax transformation."""
    decays = jnp.asarray(config.decays, jnp.float32)
    rms_decays = jnp.clip(decays, 0.0, 1.0)
    k = len(config.decays)
    blocked = resolve_path(config) == "blocked"

    def init(params: Any) -> RNNMLPLOptState:
        n = len(jax.tree.leaves(params))
        acc = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p) + (k,), jnp.result_type(p)), params)
        zero = jnp.zeros([], jnp.float32)
        return RNNMLPLOptState(
            count=jnp.zeros([], jnp.int32), m=acc, v=acc,
            lstm_h=jnp.tile(theta["h0"], (n, 1)), lstm_c=jnp.tile(theta["c0"], (n, 1)),
            from_mlp=jnp.tile(theta["from_mlp0"], (n, 1)), from_lstm=theta["from_lstm0"],
            loss_mean=zero, loss_var=zero, clip_ema=zero + (1.0 - config.clip_decay))

    def loss_features(state: RNNMLPLOptState, loss: jax.Array):
        d = config.loss_decay
        mean = d * state.loss_mean + (1.0 - d) * loss
        var = d * state.loss_var + (1.0 - d) * jnp.square(mean - loss)
        corr = 1.0 / (1.0 - d ** (state.count + 1).astype(jnp.float32) + 1e-8)
        scale = jax.lax.rsqrt(var * corr + 1e-8)
        feats = jnp.clip(jnp.stack([loss - mean * corr, -mean * corr]) * scale, -5.0, 5.0)
        return feats, mean, var

    def clip_grads(state: RNNMLPLOptState, grads: list[jax.Array]):
        a = config.clip_decay
        t = (state.count + 1).astype(jnp.float32)
        bound = state.clip_ema / (1.0 - a ** t) * config.clip_mult
        grads = [jnp.clip(g.astype(jnp.float32), -bound, bound) for g in grads]
        mean_sq = sum(jnp.mean(jnp.square(g)) for g in grads) / len(grads)
        return grads, a * state.clip_ema + (1.0 - a) * jnp.sqrt(1e-8 + mean_sq)

    def output_step(direction, magnitude):
        return direction * jnp.exp(magnitude * config.exp_mult) * config.step_mult

    def stacked_outputs(g, p32, m, v, context):
        """Steps and the 16 extra outputs' mean from the whole [..., 23] feature stack."""
        rsq = jax.lax.rsqrt(v + 1e-6)
        feats = jnp.concatenate([g[..., None], p32[..., None],
                                 jnp.log(jnp.abs(p32) + 1e-8)[..., None],
                                 m, m * rsq, v, rsq], axis=-1)
        first = fold_first_layer(theta["mlp"][0], second_moment_scale(feats), context)
        out = apply_mlp(theta["mlp"], feats, first)
        return (output_step(out[..., 0], out[..., 1]),
                jnp.mean(out[..., 2:].reshape(-1, config.from_mlp_size), axis=0))

    def blocked_outputs(g, p32, m, v, context):
        """The same, BLOCK_ROWS elements at a time (see the module docstring)."""
        n, rows = g.size, _feature_rows(g, p32, m, v)
        scale = jax.lax.rsqrt(common.NORM_EPS + _normalisation_sums(g, p32, m, v) / n)
        first = fold_first_layer(theta["mlp"][0], scale, context)

        def block(start, length):
            out = common.apply_mlp_columns(theta["mlp"], rows(start, length), first)
            return output_step(out[0], out[1]), jnp.sum(out[2:], axis=1)

        steps, extra = common.over_blocks(n, BLOCK_ROWS, block, config.from_mlp_size)
        return steps.reshape(g.shape), extra / n

    def mlp_tensor(g, p, m, v, ff, time, n_tensors):
        """Step and the mean of the 16 extra outputs for one tensor."""
        p32 = p.astype(jnp.float32)
        context = jnp.concatenate([
            time, jnp.stack([math.log(n_tensors) - 1.0,
                             jnp.log(jnp.linalg.norm(p32) + 1e-8),
                             jnp.asarray(math.log(max(p.size, 1)), jnp.float32)]),
            ff])
        outputs = blocked_outputs if blocked and g.size >= BLOCK_ROWS else stacked_outputs
        step, to_lstm = outputs(g, p32, m, v, context)
        return (-step).astype(p.dtype), to_lstm

    def update(grads: Any, state: RNNMLPLOptState, params: Any = None, *, value: Any = None,
               **extra: Any) -> tuple[Any, RNNMLPLOptState]:
        del extra
        loss = common.require_loss(NAME, value)
        common.require_params(NAME, params)
        leaves, treedef = jax.tree.flatten(grads)
        ps, ms, vs = (treedef.flatten_up_to(t) for t in (params, state.m, state.v))
        loss_feats, loss_mean, loss_var = loss_features(state, loss)
        gs, clip_ema = clip_grads(state, leaves)
        ms = [decays * m.astype(jnp.float32) + (1.0 - decays) * g[..., None]
              for m, g in zip(ms, gs)]
        vs = [rms_decays * v.astype(jnp.float32) + (1.0 - rms_decays) * jnp.square(g)[..., None]
              for v, g in zip(vs, gs)]

        tensor_in = jnp.stack([tensor_features(p, g, m, v, loss_feats)
                               for p, g, m, v in zip(ps, gs, ms, vs)])
        from_lstm = jnp.broadcast_to(state.from_lstm, (len(gs), config.from_lstm_size))
        lstm_in = jnp.concatenate([tensor_in, state.from_mlp, from_lstm], axis=-1)
        h, c = lstm_cell(theta["lstm"], lstm_in, state.lstm_h, state.lstm_c)
        new_from_lstm = jnp.mean(h @ theta["to_lstm"]["w"] + theta["to_lstm"]["b"], axis=0)
        ff = h @ theta["to_mlp"]["w"] + theta["to_mlp"]["b"]

        time = sin_time_features(state.count)
        outs = [mlp_tensor(g, p, m, v, ff[i], time, len(gs))
                for i, (g, p, m, v) in enumerate(zip(gs, ps, ms, vs))]
        new_state = RNNMLPLOptState(
            count=state.count + 1,
            m=treedef.unflatten([m.astype(o.dtype) for m, o in
                                 zip(ms, treedef.flatten_up_to(state.m))]),
            v=treedef.unflatten([v.astype(o.dtype) for v, o in
                                 zip(vs, treedef.flatten_up_to(state.v))]),
            lstm_h=h, lstm_c=c, from_mlp=jnp.stack([f for _, f in outs]),
            from_lstm=new_from_lstm, loss_mean=loss_mean, loss_var=loss_var, clip_ema=clip_ema)
        return treedef.unflatten([u for u, _ in outs]), new_state

    return optax.GradientTransformationExtraArgs(init, update)
