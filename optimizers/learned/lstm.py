"""A plain LSTM cell for the per-tensor recurrent parts of nn_adam and rnn_mlp_lopt (gates
i, g, f, o with a +1 forget-gate bias, as Haiku's LSTM that the reference code base uses)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from optimizers.learned.common import init_mlp


def init_lstm(key: jax.Array, num_inputs: int, hidden: int) -> dict[str, jax.Array]:
    """One dense layer [inputs + hidden] -> 4 * hidden; truncated normal, std 1/sqrt(fan_in)."""
    return init_mlp(key, [num_inputs + hidden, 4 * hidden])[0]


def lstm_cell(params: dict[str, jax.Array], x: jax.Array, h: jax.Array,
              c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One step on a batch [n, inputs] with state h, c [n, hidden]; returns the new (h, c)."""
    gates = jnp.concatenate([x, h], axis=-1) @ params["w"] + params["b"]
    i, g, f, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return h, c
