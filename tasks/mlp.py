"""A multi-layer perceptron as two pure functions over a list of {"w", "b"} layers."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

Layers = list[dict[str, jax.Array]]


def init_mlp(key: jax.Array, sizes: Sequence[int]) -> Layers:
    """Dense layers for ``sizes = [inputs, hidden..., outputs]``.

    Weights are truncated-normal with std 1/sqrt(fan_in) and biases zero, the initialisation of
    the reference code base's image MLPs (Haiku's ``Linear`` default).
    """
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for key_i, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:]):
        std = 1.0 / jnp.sqrt(fan_in)
        # Haiku rescales the [-2, 2] truncated normal so that its std is exactly 1.
        w = jax.random.truncated_normal(key_i, -2.0, 2.0, (fan_in, fan_out)) * std / 0.87962566
        layers.append({"w": w, "b": jnp.zeros((fan_out,))})
    return layers


def apply_mlp(layers: Layers, x: jax.Array, activation=jax.nn.relu) -> jax.Array:
    """Logits of the MLP on a batch ``x`` of shape [batch, inputs]."""
    for layer in layers[:-1]:
        x = activation(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy of integer ``labels`` under ``logits``.

    The label's log-probability is picked with a one-hot mask rather than a gather: the same
    value, but its gradient is a multiply instead of a scatter, which XLA:CPU runs element by
    element.
    """
    log_probs = jax.nn.log_softmax(logits)
    mask = jax.nn.one_hot(labels, logits.shape[-1], dtype=log_probs.dtype)
    return -jnp.mean(jnp.sum(mask * log_probs, axis=-1))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of examples whose highest logit is the label."""
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
