"""A decoder-only transformer language model on byte-level text, in several sizes.

Pre-LayerNorm blocks (causal multi-head self-attention, then a ReLU MLP 4x wide), learned
position embeddings, untied output projection; next-byte cross-entropy and accuracy. The sizes
go from a CPU-test toy to one that loads a GPU (the reference code base's transformer LMs
range from d_model 20, 1 layer, batch 4, seq 8 to d_model 304, 2 layers, batch 256, seq 32).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from tasks.base import Task, check_positive, sequential_batches
from tasks.data import text
from tasks.mlp import accuracy


def _dense(key: jax.Array, fan_in: int, fan_out: int) -> dict[str, jax.Array]:
    w = jax.random.truncated_normal(key, -2.0, 2.0, (fan_in, fan_out)) / 0.87962566
    return {"w": w / jnp.sqrt(fan_in), "b": jnp.zeros((fan_out,))}


def _norm(d_model: int) -> dict[str, jax.Array]:
    return {"scale": jnp.ones((d_model,)), "bias": jnp.zeros((d_model,))}


def init_transformer(key: jax.Array, vocab_size: int, seq_len: int, d_model: int,
                     num_layers: int, mlp_ratio: int = 4) -> dict:
    """Embeddings N(0, 0.02^2); dense weights truncated-normal with std 1/sqrt(fan_in)."""
    keys = jax.random.split(key, 3 + 4 * num_layers)
    blocks = []
    for i in range(num_layers):
        k = keys[3 + 4 * i: 7 + 4 * i]
        blocks.append({
            "ln1": _norm(d_model), "qkv": _dense(k[0], d_model, 3 * d_model),
            "proj": _dense(k[1], d_model, d_model), "ln2": _norm(d_model),
            "fc1": _dense(k[2], d_model, mlp_ratio * d_model),
            "fc2": _dense(k[3], mlp_ratio * d_model, d_model),
        })
    return {
        "embed": 0.02 * jax.random.normal(keys[0], (vocab_size, d_model)),
        "pos": 0.02 * jax.random.normal(keys[1], (seq_len, d_model)),
        "blocks": blocks,
        "ln_f": _norm(d_model),
        "unembed": _dense(keys[2], d_model, vocab_size),
    }


def _layer_norm(p: dict, x: jax.Array) -> jax.Array:
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * p["scale"] + p["bias"]


def _attention(block: dict, x: jax.Array, num_heads: int) -> jax.Array:
    batch, length, d_model = x.shape
    qkv = x @ block["qkv"]["w"] + block["qkv"]["b"]
    q, k, v = jnp.split(qkv.reshape(batch, length, 3 * num_heads, -1), 3, axis=2)
    scores = jnp.einsum("bthd,bshd->bhts", q, k) / jnp.sqrt(q.shape[-1]).astype(x.dtype)
    causal = jnp.tril(jnp.ones((length, length), dtype=bool))
    weights = jax.nn.softmax(jnp.where(causal, scores, -1e9), axis=-1)
    out = jnp.einsum("bhts,bshd->bthd", weights, v).reshape(batch, length, d_model)
    return out @ block["proj"]["w"] + block["proj"]["b"]


def apply_transformer(params: dict, inputs: jax.Array, num_heads: int) -> jax.Array:
    """Next-token logits [batch, length, vocab] for int tokens [batch, length]."""
    x = params["embed"][inputs] + params["pos"][: inputs.shape[1]]
    for block in params["blocks"]:
        x = x + _attention(block, _layer_norm(block["ln1"], x), num_heads)
        h = _layer_norm(block["ln2"], x)
        h = jax.nn.relu(h @ block["fc1"]["w"] + block["fc1"]["b"])
        x = x + h @ block["fc2"]["w"] + block["fc2"]["b"]
    x = _layer_norm(params["ln_f"], x)
    return x @ params["unembed"]["w"] + params["unembed"]["b"]


def _windows(tokens: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    return tokens[starts[:, None] + np.arange(length)]


def random_windows(tokens: np.ndarray, batch_size: int, length: int,
                   seed: int) -> Iterator[dict[str, np.ndarray]]:
    """Batches of ``length``-token windows at uniformly drawn offsets, forever, from ``seed``."""
    rng = np.random.default_rng(seed)
    while True:
        starts = rng.integers(0, len(tokens) - length + 1, size=batch_size)
        yield {"tokens": _windows(tokens, starts, length)}


def char_transformer_lm(
    name: str = "lm_tiny",
    d_model: int = 32,
    num_layers: int = 1,
    num_heads: int = 2,
    seq_len: int = 32,
    batch_size: int = 32,
    eval_windows: int = 128,
    eval_batch_size: int = 64,
    text_file: str | None = None,
) -> Task:
    """A byte-level transformer LM on the pinned standard-library corpus (or ``text_file``).

    A batch is ``tokens`` [batch, seq_len + 1]: inputs are the first seq_len, targets the last.
    Evaluation uses the first ``eval_windows`` non-overlapping windows of the held-out text.
    """
    check_positive(d_model=d_model, num_layers=num_layers, num_heads=num_heads, seq_len=seq_len,
                   batch_size=batch_size, eval_windows=eval_windows,
                   eval_batch_size=eval_batch_size)
    if d_model % num_heads:
        raise ValueError(f"d_model={d_model} is not a multiple of num_heads={num_heads}")
    train_tokens = text.load("train", text_file)
    test_tokens = text.load("test", text_file)
    length = seq_len + 1
    available = len(test_tokens) // length
    if available < 1 or len(train_tokens) < length:
        raise ValueError(f"seq_len={seq_len}: the text is too short for one window")
    starts = np.arange(min(eval_windows, available)) * length
    test = {"tokens": _windows(test_tokens, starts, length)}
    apply = functools.partial(apply_transformer, num_heads=num_heads)

    def loss(params, batch):
        logits = apply(params, batch["tokens"][:, :-1])
        log_probs = jax.nn.log_softmax(logits)
        targets = batch["tokens"][:, 1:, None]
        return -jnp.mean(jnp.take_along_axis(log_probs, targets, axis=-1))

    def metrics(params, batch):
        return {"accuracy": accuracy(apply(params, batch["tokens"][:, :-1]),
                                     batch["tokens"][:, 1:])}

    return Task(
        name=name,
        family="transformer_lm",
        data_fingerprint=text.text_fingerprint(text_file),
        batch_size=batch_size,
        # Jitted: op-by-op initialisation of many small tensors is slow to dispatch.
        init=jax.jit(functools.partial(init_transformer, vocab_size=text.VOCAB_SIZE,
                                       seq_len=seq_len, d_model=d_model,
                                       num_layers=num_layers)),
        loss=loss,
        train_batches=functools.partial(random_windows, train_tokens, batch_size, length),
        eval_batches=functools.partial(sequential_batches, test, eval_batch_size),
        abstract_batch={"tokens": jax.ShapeDtypeStruct((batch_size, length), jnp.int32)},
        metrics=metrics,
        num_classes=text.VOCAB_SIZE,
    )
