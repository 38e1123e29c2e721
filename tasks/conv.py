"""A small convolutional classifier: strided 3x3 convolutions, ReLU, global mean pool, linear.

Written on ``jax.lax.conv_general_dilated`` (NHWC images, HWIO kernels), no layer library.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from tasks.base import Task, check_positive, sequential_batches, shuffled_batches
from tasks.image_data import abstract_image_batch, image_splits
from tasks.mlp import accuracy, init_mlp, softmax_cross_entropy

_DIMS = ("NHWC", "HWIO", "NHWC")


def init_convnet(key: jax.Array, in_channels: int, channels: Sequence[int],
                 num_classes: int, kernel: int = 3) -> dict:
    """Kernels truncated-normal with std 1/sqrt(fan_in) (fan_in = kernel^2 * in_channels),
    biases zero; a dense head from the pooled channels to the classes."""
    keys = jax.random.split(key, len(channels) + 1)
    convs = []
    for key_i, c_in, c_out in zip(keys, [in_channels, *channels[:-1]], channels):
        std = 1.0 / jnp.sqrt(kernel * kernel * c_in)
        w = jax.random.truncated_normal(key_i, -2.0, 2.0, (kernel, kernel, c_in, c_out))
        convs.append({"w": w * std / 0.87962566, "b": jnp.zeros((c_out,))})
    return {"convs": convs, "head": init_mlp(keys[-1], [channels[-1], num_classes])}


def apply_convnet(params: dict, images: jax.Array, stride: int = 2) -> jax.Array:
    """Logits for a batch of NHWC images."""
    x = images
    for layer in params["convs"]:
        x = jax.lax.conv_general_dilated(x, layer["w"], (stride, stride), "SAME",
                                         dimension_numbers=_DIMS)
        x = jax.nn.relu(x + layer["b"])
    pooled = jnp.mean(x, axis=(1, 2))
    head = params["head"][0]
    return pooled @ head["w"] + head["b"]


def convnet(
    name: str = "fmnist_conv",
    dataset: str = "fashion_mnist",
    image_size: int = 28,
    channels: Sequence[int] = (16, 32, 32),
    stride: int = 2,
    batch_size: int = 128,
    eval_batch_size: int = 1000,
    data_dir: str | None = None,
) -> Task:
    """A small convnet classifier on a real image data set, evaluated on its test split."""
    channels = [int(c) for c in channels]
    check_positive(image_size=image_size, batch_size=batch_size, stride=stride,
                   **{f"channels[{i}]": c for i, c in enumerate(channels)})
    if not channels:
        raise ValueError("channels=[]: a convnet needs at least one convolution")
    splits = image_splits(dataset, image_size, data_dir)
    in_channels = splits.image_shape[-1]
    apply = functools.partial(apply_convnet, stride=stride)

    def loss(params, batch):
        return softmax_cross_entropy(apply(params, batch["image"]), batch["label"])

    def metrics(params, batch):
        return {"accuracy": accuracy(apply(params, batch["image"]), batch["label"])}

    return Task(
        name=name,
        data_fingerprint=splits.fingerprint,
        family="convnet",
        batch_size=batch_size,
        init=jax.jit(functools.partial(init_convnet, in_channels=in_channels,
                                       channels=channels, num_classes=splits.num_classes)),
        loss=loss,
        train_batches=functools.partial(shuffled_batches, splits.train, batch_size),
        train_arrays=splits.train,
        eval_batches=functools.partial(sequential_batches, splits.test, eval_batch_size),
        abstract_batch=abstract_image_batch(splits, batch_size),
        metrics=metrics,
        num_classes=splits.num_classes,
    )
