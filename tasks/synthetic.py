"""A quick synthetic classification task, for unit tests only (never for the default sweep).

Gaussian inputs labelled by a fixed random linear teacher: learnable in a few dozen steps and
generated from a seed in milliseconds.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tasks.base import Task, sequential_batches, shuffled_batches
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
    """An MLP on synthetic teacher-labelled Gaussian data (a stand-in for unit tests)."""
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
        eval_batches=functools.partial(sequential_batches, test, num_eval),
        abstract_batch={
            "x": jax.ShapeDtypeStruct((batch_size, inputs), jnp.float32),
            "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32),
        },
        hparams={"dataset": "synthetic", "inputs": inputs, "batch_size": batch_size},
    )
