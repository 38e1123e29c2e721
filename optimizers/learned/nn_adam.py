"""nn_adam: Adam whose per-tensor hyperparameters are steered by a learned per-tensor LSTM.

Source: the reference code base google/learned_optimization (``NNAdam``, Metz et al.). Facts
taken from there (no code): an LSTM with hidden size 32 reads 19 features per tensor and a
linear head (32 -> 4, initialised to zero) emits per-tensor deltas, scaled by
``output_scale`` = 0.01, that are added to the tensor's learning rate, beta1, beta2 and
epsilon, each kept in a rescaled space: lr and eps as 0.1 * log(x) (clipped to [1e-8, 1e3]
and [1e-11, 1e4]), betas as 0.1 * log(1 - b) (b = 1 - exp(clip(10 x, -10, 0))). Initial
values lr 1e-4, b1 0.9, b2 0.999, eps 1e-8 are meta-parameters. Gradients are clipped to
[-1000, 1000]; the accumulators m <- b1 m + (1 - b1) g and v <- b2 v + (1 - b2) g^2 use the
tensor's current betas (no bias correction), and the step is
lr * (1 + eps) / (eps + sqrt(v + 1e-10)) * m, which turns into SGD with momentum as eps grows
without the learning rate having to grow with it. The hyperparameters used for a step are
those from before it; the LSTM then updates them for the next step. With the zero head, a
freshly initialised nn_adam is exactly this Adam variant with fixed constants.

LSTM (the haiku cell the reference uses): one dense layer on [x, h] -> 4 * hidden gates
(i, g, f, o); c' = sigmoid(f + 1) c + sigmoid(i) tanh(g); h' = sigmoid(o) tanh(c'); weights
truncated normal, std 1/sqrt(fan_in), zero biases; the initial (h, c) are meta-parameters
(zeros at initialisation).

Meta-parameter layout at defaults (6,856, the reference's count):
  lstm  w [19 + 32, 128] + b [128]    6,656
  h0, c0 [32] each                       64
  head  w [32, 4] + b [4] (zeros)       132
  initial lr, b1, b2, eps (rescaled)      4

The 19 per-tensor features (log magnitudes are 0.5 * clip(log(1e-8 + |x|), -5, 5)):
  log-magnitude and sign of mean(m); log-magnitude of var(m); log-magnitude of mean(v) and of
  var(v); log-magnitude and sign of mean(p); log-magnitude of var(p); log-magnitude and sign of
  mean(g); log-magnitude of var(g) and of mean(|g|); is-scalar and is-vector flags (+-1); the
  four current hyperparameters in their rescaled space, clip(x, -5, 5) * 0.2; and the log-
  magnitude of the training loss. These are the reference's features except that the loss
  replaces its sign of mean(v), which is +1 whenever any gradient is non-zero and so carries
  nothing; this makes the loss a required input (``value=``). p is the parameter before the
  update, g the clipped gradient, m and v the accumulators after it.

State: m and v per parameter (2 floats/param), per tensor the LSTM's (h, c) (64 floats) and
the four rescaled hyperparameters, and an int32 step counter: 2.004 floats/param on a 256x128
weight plus its bias.

Two execution paths compute the same update: ``direct`` writes the accumulators and the step
as whole-tensor expressions and takes the tensor statistics as reductions over them (on
XLA:CPU each its own pass over memory); ``blocked`` writes the same elementwise values and takes
the statistics of m, v and g BLOCK_ROWS elements at a time in one loop, every statistic of a
block while it sits in cache, combining the blocks' means and squared deviations exactly (Chan,
Golub and LeVeque 1979, the pairwise update). In both, the parameter's two statistics are taken
first and the step is made to depend on them (``_after``): a caller that donates the parameters
overwrites them in place with the update, and XLA, unable to order a reduction of the old values
before that write on its own, would copy the whole parameter first.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers.learned import common, lstm

NAME = "nn_adam"
NUM_FEATURES = 19
GRAD_CLIP = 1000.0
PATHS = ("direct", "blocked")
# The faster path per backend, measured with `make bench` (nn_adam/direct and /blocked rows:
# on a 2-core CPU direct is faster at 1M parameters, and the two within 10% at 10M).
DEFAULT_PATH = {"cpu": "direct"}
# Elements per block of the blocked path (and the least size it is taken for).
BLOCK_ROWS = 32768


@dataclasses.dataclass(frozen=True)
class Config:
    """nn_adam's settings; defaults are the reference architecture's."""

    lstm_hidden_size: int = 32
    output_scale: float = 0.01
    initial_learning_rate: float = 1e-4
    initial_beta1: float = 0.9
    initial_beta2: float = 0.999
    initial_epsilon: float = 1e-8
    path: str = "auto"  # direct, blocked, or auto: the faster one on this backend

    def __post_init__(self) -> None:
        if self.path not in (*PATHS, "auto"):
            raise ValueError(f"optimizer.path={self.path!r}: expected one of {PATHS} or 'auto'")


def resolve_path(config: Config) -> str:
    """``auto`` becomes the measured faster path for the current backend."""
    if config.path != "auto":
        return config.path
    return DEFAULT_PATH.get(jax.default_backend(), "direct")


class NNAdamState(NamedTuple):
    count: jax.Array  # int32: updates done so far
    m: Any  # first moment, per parameter
    v: Any  # second moment, per parameter
    lstm_h: jax.Array  # [num_tensors, hidden]
    lstm_c: jax.Array  # [num_tensors, hidden]
    hparams: jax.Array  # [num_tensors, 4]: lr, b1, b2, eps in their rescaled space


# --- hyperparameters in their rescaled space -------------------------------------------------


def _to_space(lr: float, b1: float, b2: float, eps: float) -> list[float]:
    return [0.1 * math.log(lr), 0.1 * math.log1p(-b1), 0.1 * math.log1p(-b2),
            0.1 * math.log(eps)]


def _from_space(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """lr, b1, b2, eps (each [..., ]) from the rescaled [..., 4], clipped to valid ranges."""
    lr = jnp.clip(jnp.exp(10.0 * x[..., 0]), 1e-8, 1e3)
    b1 = 1.0 - jnp.exp(jnp.clip(10.0 * x[..., 1], -10.0, 0.0))
    b2 = 1.0 - jnp.exp(jnp.clip(10.0 * x[..., 2], -10.0, 0.0))
    eps = jnp.clip(jnp.exp(10.0 * x[..., 3]), 1e-11, 1e4)
    return lr, b1, b2, eps


def _clip_to_space(x: jax.Array) -> jax.Array:
    """Clip rescaled values to the valid ranges: the reference's round trip value ->
    hyperparameter -> value, done in the rescaled space so it adds no float rounding."""
    lo = jnp.asarray([0.1 * math.log(1e-8), -1.0, -1.0, 0.1 * math.log(1e-11)], jnp.float32)
    hi = jnp.asarray([0.1 * math.log(1e3), 0.0, 0.0, 0.1 * math.log(1e4)], jnp.float32)
    return jnp.clip(x, lo, hi)


def log_mag(x: jax.Array) -> jax.Array:
    return 0.5 * jnp.clip(jnp.log(1e-8 + jnp.abs(x)), -5.0, 5.0)


class Moments(NamedTuple):
    """A tensor's statistics the features read: the means and (population) variances of m,
    v, p and g, in that order, and the mean of |g|."""

    means: jax.Array  # [4]
    variances: jax.Array  # [4]
    mean_abs_g: jax.Array


def _mean_and_variance(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean = jnp.mean(x)
    return mean, jnp.mean(jnp.square(x - mean))


def _after(x: jax.Array, *stats: jax.Array) -> jax.Array:
    """``x`` unchanged, made to depend on ``stats`` so that XLA computes them before anything
    computed from ``x`` (module docstring); a non-finite statistic leaves ``x`` as it is."""
    zero = jnp.nan_to_num(0.0 * sum(stats), nan=0.0, posinf=0.0, neginf=0.0)
    return x + zero


def _moments(m: jax.Array, v: jax.Array, p_stats: tuple[jax.Array, jax.Array],
             g: jax.Array) -> Moments:
    """The statistics of m, v and g as whole-tensor reductions, with the parameter's."""
    (mean_m, var_m), (mean_v, var_v), (mean_g, var_g) = (
        _mean_and_variance(x) for x in (m, v, g))
    return Moments(jnp.stack([mean_m, mean_v, p_stats[0], mean_g]),
                   jnp.stack([var_m, var_v, p_stats[1], var_g]), jnp.mean(jnp.abs(g)))



def tensor_features(moments: Moments, ndim: int, hparams: jax.Array,
                    loss_feature: jax.Array) -> jax.Array:
    """The 19 features of one tensor of rank ``ndim`` (see the module docstring)."""
    (mean_m, mean_v, mean_p, mean_g), (var_m, var_v, var_p, var_g) = (
        moments.means, moments.variances)
    flag = lambda on: jnp.asarray(1.0 if on else -1.0, jnp.float32)  # noqa: E731
    return jnp.stack([
        log_mag(mean_m), jnp.sign(mean_m), log_mag(var_m),
        log_mag(mean_v), log_mag(var_v),
        log_mag(mean_p), jnp.sign(mean_p), log_mag(var_p),
        log_mag(mean_g), jnp.sign(mean_g), log_mag(var_g),
        log_mag(moments.mean_abs_g),
        flag(ndim == 0), flag(ndim == 1),
        *(0.2 * jnp.clip(hparams, -5.0, 5.0)),
        loss_feature,
    ])


def _accumulate(g, m, v, lr, b1, b2, eps):
    """Clipped gradient, new accumulators and the step, float32, elementwise."""
    g = jnp.clip(g.astype(jnp.float32), -GRAD_CLIP, GRAD_CLIP)
    m1 = b1 * m.astype(jnp.float32) + (1.0 - b1) * g
    v1 = b2 * v.astype(jnp.float32) + (1.0 - b2) * jnp.square(g)
    return g, m1, v1, lr * (1.0 + eps) / (eps + jnp.sqrt(v1 + 1e-10)) * m1


def _direct_tensor(g, p, m, v, lr, b1, b2, eps):
    p_stats = _mean_and_variance(p.astype(jnp.float32))
    g, m1, v1, step = _accumulate(g, m, v, _after(lr, *p_stats), b1, b2, eps)
    return step, m1, v1, _moments(m1, v1, p_stats, g)


def _blocked_tensor(g, p, m, v, lr, b1, b2, eps):
    """The direct path's values with the statistics of m, v and g taken BLOCK_ROWS elements at
    a time in one loop (module docstring): each block's means and squared deviations, in cache,
    combined with the running ones."""
    p_stats = _mean_and_variance(p.astype(jnp.float32))
    clipped, m1, v1, step = _accumulate(g, m, v, _after(lr, *p_stats), b1, b2, eps)
    n, block = g.size, BLOCK_ROWS
    flat = [x.reshape(n) for x in (m1, v1, g)]

    def part(start, length):
        m_b, v_b, g_b = (jax.lax.dynamic_slice_in_dim(x, start, length) for x in flat)
        g_b = jnp.clip(g_b.astype(jnp.float32), -GRAD_CLIP, GRAD_CLIP)
        xs = [m_b, v_b, g_b]  # each its own reduction: a stacked [3, B] one compiles to scalar code
        means = [jnp.mean(x) for x in xs]
        deviations = [jnp.sum(jnp.square(x - mu)) for x, mu in zip(xs, means)]
        return jnp.stack(means), jnp.stack(deviations), jnp.sum(jnp.abs(g_b))

    def combine(total, count, block_part, length):
        """Running (mean, squared deviations, sum |g|) over ``count`` elements joined by a
        block's over ``length`` (the pairwise update)."""
        (mean_a, dev_a, abs_a), (mean_b, dev_b, abs_b) = total, block_part
        delta, joined = mean_b - mean_a, count + length
        return (mean_a + delta * (length / joined),
                dev_a + dev_b + jnp.square(delta) * (count * length / joined), abs_a + abs_b)

    blocks = n // block
    total = (jnp.zeros((3,), jnp.float32), jnp.zeros((3,), jnp.float32), jnp.float32(0.0))
    total = jax.lax.fori_loop(0, blocks, lambda i, t: combine(
        t, (i * block).astype(jnp.float32), part(i * block, block), block), total)
    done = blocks * block
    if done < n:
        total = combine(total, jnp.float32(done), part(done, n - done), n - done)
    mean, deviations, abs_sum = total
    del clipped  # the loop clips its blocks itself: no full-size clipped copy is read
    variance = deviations / n
    return step, m1, v1, Moments(jnp.stack([mean[0], mean[1], p_stats[0], mean[2]]),
                                 jnp.stack([variance[0], variance[1], p_stats[1], variance[2]]),
                                 abs_sum / n)


def init_meta(key: jax.Array, config: Config = Config()) -> dict[str, Any]:
    """LSTM weights, its initial state, a zero head and the initial hyperparameters."""
    hidden = config.lstm_hidden_size
    return {
        "lstm": lstm.init_lstm(key, NUM_FEATURES, hidden),
        "h0": jnp.zeros((hidden,), jnp.float32),
        "c0": jnp.zeros((hidden,), jnp.float32),
        "head": {"w": jnp.zeros((hidden, 4), jnp.float32), "b": jnp.zeros((4,), jnp.float32)},
        "hparams": jnp.asarray(
            _to_space(config.initial_learning_rate, config.initial_beta1,
                      config.initial_beta2, config.initial_epsilon), jnp.float32),
    }


def to_optax(theta: dict[str, Any],
             config: Config = Config()) -> optax.GradientTransformationExtraArgs:
    """nn_adam with meta-parameters ``theta`` as an optax transformation."""

    def init(params: Any) -> NNAdamState:
        n = len(jax.tree.leaves(params))
        def zeros():  # a buffer of its own for m and for v, so either can be donated
            return jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), jnp.result_type(p)), params)

        return NNAdamState(
            count=jnp.zeros([], jnp.int32), m=zeros(), v=zeros(),
            lstm_h=jnp.tile(theta["h0"], (n, 1)), lstm_c=jnp.tile(theta["c0"], (n, 1)),
            hparams=jnp.tile(theta["hparams"], (n, 1)))

    blocked = resolve_path(config) == "blocked"

    def update(grads: Any, state: NNAdamState, params: Any = None, *, value: Any = None,
               **extra: Any) -> tuple[Any, NNAdamState]:
        del extra
        loss = common.require_loss(NAME, value)
        common.require_params(NAME, params)
        leaves, treedef = jax.tree.flatten(grads)
        ps, ms, vs = (treedef.flatten_up_to(t) for t in (params, state.m, state.v))
        lr, b1, b2, eps = _from_space(state.hparams)
        loss_feature = log_mag(loss)
        updates, new_m, new_v, feats = [], [], [], []
        for i, (g, p, m, v) in enumerate(zip(leaves, ps, ms, vs)):
            tensor = _blocked_tensor if blocked and g.size >= BLOCK_ROWS else _direct_tensor
            step, m1, v1, moments = tensor(g, p, m, v, lr[i], b1[i], b2[i], eps[i])
            updates.append((-step).astype(p.dtype))
            new_m.append(m1.astype(m.dtype))
            new_v.append(v1.astype(v.dtype))
            feats.append(tensor_features(moments, jnp.ndim(p), state.hparams[i], loss_feature))
        h, c = lstm.lstm_cell(theta["lstm"], jnp.stack(feats), state.lstm_h, state.lstm_c)
        deltas = (h @ theta["head"]["w"] + theta["head"]["b"]) * config.output_scale
        new_state = NNAdamState(
            count=state.count + 1, m=treedef.unflatten(new_m), v=treedef.unflatten(new_v),
            lstm_h=h, lstm_c=c, hparams=_clip_to_space(state.hparams + deltas))
        return treedef.unflatten(updates), new_state

    return optax.GradientTransformationExtraArgs(init, update)
