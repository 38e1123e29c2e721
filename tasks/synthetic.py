"""Synthetic tasks for unit tests and timing benchmarks only (never for the default sweep).

Generated from a seed in milliseconds, so tests need no data set and timings need no loader.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tasks.base import Task, check_positive, sequential_batches, shuffled_batches
from tasks.mlp import apply_mlp, init_mlp, softmax_cross_entropy


def _make_split(rng: np.random.Generator, teacher: np.ndarray, n: int) -> dict[str, np.ndarray]:
    x = rng.standard_normal((n, teacher.shape[0])).astype(np.float32)
    return {"x": x, "label": np.argmax(x @ teacher, axis=1).astype(np.int32)}


def synthetic_mlp(
    name: str = "synthetic",
    inputs: int = 16,
    hidden_sizes: Sequence[int] = (16,),
    classes: int = 4,
    batch_size: int = 32,
    num_train: int = 2048,
    num_eval: int = 512,
    data_seed: int = 0,
) -> Task:
    """An MLP on Gaussian inputs labelled by a fixed random linear teacher: learnable in a few
    dozen steps (a stand-in for unit tests)."""
    check_positive(inputs=inputs, classes=classes, batch_size=batch_size, num_train=num_train,
                   num_eval=num_eval, **{f"hidden_sizes[{i}]": h for i, h in
                                         enumerate(hidden_sizes)})
    if batch_size > num_train:
        raise ValueError(f"batch_size={batch_size} exceeds num_train={num_train}")
    rng = np.random.default_rng(data_seed)
    teacher = rng.standard_normal((inputs, classes)).astype(np.float32)
    train, test = _make_split(rng, teacher, num_train), _make_split(rng, teacher, num_eval)
    sizes = [inputs, *[int(h) for h in hidden_sizes], classes]

    def loss(params, batch):
        return softmax_cross_entropy(apply_mlp(params, batch["x"]), batch["label"])

    return Task(
        name=name,
        family="synthetic",
        batch_size=batch_size,
        init=functools.partial(init_mlp, sizes=sizes),
        loss=loss,
        train_batches=functools.partial(shuffled_batches, train, batch_size),
        train_arrays=train,
        eval_batches=functools.partial(sequential_batches, test, num_eval),
        abstract_batch={
            "x": jax.ShapeDtypeStruct((batch_size, inputs), jnp.float32),
            "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32),
        },
    )


def wide_linear(
    name: str = "wide_linear", rows: int = 1000, cols: int = 1000, batch_size: int = 8,
    data_seed: int = 0,
) -> Task:
    """A linear least-squares model with a [rows, cols] weight and a [cols] bias, for timing
    optimizer updates at a chosen parameter count; the small batch keeps the gradient cheap.

    Synthetic data (Gaussian inputs and targets); for benchmarks and tests, not for results.
    """
    check_positive(rows=rows, cols=cols, batch_size=batch_size)
    rng = np.random.default_rng(data_seed)
    n = 4 * batch_size
    data = {"x": rng.standard_normal((n, rows)).astype(np.float32),
            "y": rng.standard_normal((n, cols)).astype(np.float32)}

    def init(key):
        return {"w": jax.random.normal(key, (rows, cols)) / np.sqrt(rows), "b": jnp.zeros((cols,))}

    def loss(params, batch):
        return 0.5 * jnp.mean(jnp.square(batch["x"] @ params["w"] + params["b"] - batch["y"]))

    return Task(
        name=name,
        family="wide_linear",
        batch_size=batch_size,
        init=init,
        loss=loss,
        train_batches=functools.partial(shuffled_batches, data, batch_size),
        train_arrays=data,
        eval_batches=functools.partial(sequential_batches, data, n),
        abstract_batch={
            "x": jax.ShapeDtypeStruct((batch_size, rows), jnp.float32),
            "y": jax.ShapeDtypeStruct((batch_size, cols), jnp.float32),
        },
    )


def noisy_quadratic(
    name: str = "quadratic", dim: int = 8, batch_size: int = 4, noise: float = 0.1,
    num_train: int = 1024, data_seed: int = 0,
) -> Task:
    """A quadratic bowl with curvatures 0.5 ... 2 whose centre each example shifts by Gaussian
    noise: a smooth problem whose optimum is known, for tests of meta-training estimators."""
    check_positive(dim=dim, batch_size=batch_size, num_train=num_train)
    if not noise >= 0:
        raise ValueError(f"noise={noise}: must be non-negative")
    rng = np.random.default_rng(data_seed)
    data = {"shift": (noise * rng.standard_normal((num_train, dim))).astype(np.float32)}
    scales = jnp.linspace(0.5, 2.0, dim)

    def init(key):
        return {"x": jax.random.normal(key, (dim,))}

    def loss(params, batch):
        return 0.5 * jnp.mean(jnp.sum(scales * (params["x"] - batch["shift"]) ** 2, axis=-1))

    return Task(
        name=name,
        family="quadratic",
        batch_size=batch_size,
        init=init,
        loss=loss,
        train_batches=functools.partial(shuffled_batches, data, batch_size),
        train_arrays=data,
        eval_batches=functools.partial(sequential_batches, data, num_train),
        abstract_batch={"shift": jax.ShapeDtypeStruct((batch_size, dim), jnp.float32)},
    )
