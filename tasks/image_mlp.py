"""Image classification MLPs, among them the paper's standard task.

The standard task of Metz et al. 2022 (the reference code base's
``ImageMLP_FashionMnist8_Relu32``): Fashion-MNIST resized to 8x8, one hidden layer of 32 ReLU
units, batch 128. The same factory gives the 16x16 and 32x32 variants, the 128x128x128 MLP,
other data sets (MNIST, CIFAR-10) and the wide MLPs used for scaling.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

from tasks.base import Task, check_positive, sequential_batches, shuffled_batches
from tasks.image_data import abstract_image_batch, image_splits
from tasks.mlp import accuracy, apply_mlp, init_mlp, softmax_cross_entropy


def image_mlp(
    name: str = "fmnist_mlp8",
    dataset: str = "fashion_mnist",
    image_size: int = 8,
    hidden_sizes: Sequence[int] = (32,),
    batch_size: int = 128,
    eval_batch_size: int = 2500,
    data_dir: str | None = None,
) -> Task:
    """An MLP classifier on a real image data set; evaluation is on its test split.

    The data are loaded (and the folder checked) when the task is built, so a missing data set
    fails before any work starts.
    """
    hidden_sizes = [int(h) for h in hidden_sizes]
    check_positive(batch_size=batch_size, image_size=image_size,
                   **{f"hidden_sizes[{i}]": h for i, h in enumerate(hidden_sizes)})
    splits = image_splits(dataset, image_size, data_dir, flatten=True)
    sizes = [splits.image_shape[0], *hidden_sizes, splits.num_classes]

    def loss(params, batch):
        return softmax_cross_entropy(apply_mlp(params, batch["image"]), batch["label"])

    def metrics(params, batch):
        return {"accuracy": accuracy(apply_mlp(params, batch["image"]), batch["label"])}

    return Task(
        name=name,
        data_fingerprint=splits.fingerprint,
        family="image_mlp",
        batch_size=batch_size,
        init=functools.partial(init_mlp, sizes=sizes),
        loss=loss,
        train_batches=functools.partial(shuffled_batches, splits.train, batch_size),
        train_arrays=splits.train,
        eval_batches=functools.partial(sequential_batches, splits.test, eval_batch_size),
        abstract_batch=abstract_image_batch(splits, batch_size),
        metrics=metrics,
        num_classes=splits.num_classes,
    )


def fashion_mnist_mlp(
    name: str = "fmnist_mlp8",
    image_size: int = 8,
    hidden_sizes: Sequence[int] = (32,),
    batch_size: int = 128,
    eval_batch_size: int = 2500,
    data_dir: str | None = None,
) -> Task:
    """``image_mlp`` on Fashion-MNIST (the standard task's factory)."""
    return image_mlp(name, "fashion_mnist", image_size, hidden_sizes, batch_size,
                     eval_batch_size, data_dir)


def wide_mlp(
    name: str = "fmnist_wide256",
    width: int = 256,
    depth: int = 2,
    dataset: str = "fashion_mnist",
    image_size: int = 8,
    batch_size: int = 128,
    eval_batch_size: int = 2500,
    data_dir: str | None = None,
) -> Task:
    """An image MLP of ``depth`` hidden layers of ``width`` units: one knob to scale the
    parameter count (width 256 to 4,096 and beyond) at a fixed data cost per example."""
    check_positive(width=width, depth=depth)
    task = image_mlp(name, dataset, image_size, [width] * depth, batch_size, eval_batch_size,
                     data_dir)
    return dataclasses.replace(task, family="wide_mlp",
                               )
