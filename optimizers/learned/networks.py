"""Two ways to evaluate a small per-parameter MLP on features of one tensor: stacked into a
[..., F] array and run as matrix products, or unrolled into sums of scalar * tensor terms that
XLA fuses into elementwise loops without ever holding the feature stack."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from optimizers.learned.common import NORM_EPS


def network_stacked(network, feats, extra, shape):
    """Stack features into [..., F], normalise, and run the MLP as matrix products."""
    stacked = jnp.stack([jnp.broadcast_to(f, shape) for f in feats], axis=-1)
    stacked = stacked * jax.lax.rsqrt(
        NORM_EPS + jnp.mean(jnp.square(stacked), axis=tuple(range(len(shape)))))
    if extra is not None:
        stacked = jnp.concatenate([stacked, jnp.broadcast_to(extra, (*shape, extra.shape[0]))],
                                  axis=-1)
    x = stacked
    for layer in network[:-1]:
        x = jax.nn.relu(dot(x, layer["w"]) + layer["b"])
    out = dot(x, network[-1]["w"]) + network[-1]["b"]
    return out[..., 0], out[..., 1]


def dot(x: jax.Array, w: jax.Array) -> jax.Array:
    """A float32 matrix product in full float32 (GPUs would otherwise round the inputs to
    TF32, and the two paths would no longer compute the same update)."""
    return jnp.matmul(x, w, precision=jax.lax.Precision.HIGHEST)


def network_unrolled(network, feats, scales, extra, shape):
    """The same network as sums of scalar * tensor terms: the normalisation scales and the
    time features fold into the first layer's weights and bias, leaving elementwise work."""
    first = network[0]
    n = len(feats)
    w_feats = first["w"][:n] * scales[:, None]
    bias = first["b"] if extra is None else first["b"] + dot(extra, first["w"][n:])
    hidden = [jnp.broadcast_to(bias[j], shape) + sum(w_feats[k, j] * feats[k] for k in range(n))
              for j in range(first["w"].shape[1])]
    if len(network) == 1:
        return hidden[0], hidden[1]
    hidden = [jax.nn.relu(h) for h in hidden]
    for index, layer in enumerate(network[1:], start=1):
        outs = [layer["b"][j] + sum(layer["w"][i, j] * h for i, h in enumerate(hidden))
                for j in range(layer["w"].shape[1])]
        hidden = outs if index == len(network) - 1 else [jax.nn.relu(h) for h in outs]
    return hidden[0], hidden[1]
