"""Image classification MLPs, among them the paper's standard task.

The standard task of Metz et al. 2022 (the reference code base's
``ImageMLP_FashionMnist8_Relu32``): Fashion-MNIST resized to 8x8, one hidden layer of 32 ReLU
units, batch 128.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from tasks.base import Task, sequential_batches, shuffled_batches
from tasks.data import fashion_mnist
from tasks.mlp import apply_mlp, init_mlp, softmax_cross_entropy


def fashion_mnist_mlp(
    name: str = "fmnist_mlp8",
    image_size: int = 8,
    hidden_sizes: Sequence[int] = (32,),
    batch_size: int = 128,
    eval_batch_size: int = 2500,
    data_dir: str | None = None,
) -> Task:
    """An MLP classifier on real Fashion-MNIST; evaluation is on the 10,000-image test split.

    The data are loaded (and the folder checked) when the task is built, so a missing data set
    fails before any work starts.
    """
    hidden_sizes = [int(h) for h in hidden_sizes]
    if batch_size < 1 or any(h < 1 for h in hidden_sizes):
        raise ValueError(f"batch_size={batch_size}, hidden_sizes={hidden_sizes}: must be positive")
    train_x, train_y = fashion_mnist.load("train", image_size, data_dir)
    test_x, test_y = fashion_mnist.load("test", image_size, data_dir)
    inputs = image_size * image_size
    train = {"image": train_x.reshape(len(train_x), inputs), "label": train_y}
    test = {"image": test_x.reshape(len(test_x), inputs), "label": test_y}
    sizes = [inputs, *hidden_sizes, fashion_mnist.NUM_CLASSES]

    def loss(params, batch):
        return softmax_cross_entropy(apply_mlp(params, batch["image"]), batch["label"])

    return Task(
        name=name,
        family="image_mlp",
        batch_size=batch_size,
        init=functools.partial(init_mlp, sizes=sizes),
        loss=loss,
        train_batches=functools.partial(shuffled_batches, train, batch_size),
        eval_batches=functools.partial(sequential_batches, test, eval_batch_size),
        abstract_batch={
            "image": jax.ShapeDtypeStruct((batch_size, inputs), jnp.float32),
            "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32),
        },
        hparams={
            "dataset": "fashion_mnist",
            "image_size": image_size,
            "hidden_sizes": "x".join(map(str, hidden_sizes)),
            "batch_size": batch_size,
        },
    )
