"""A small convolutional classifier: strided 3x3 convolutions, ReLU, global mean pool, linear.

NHWC images, HWIO kernels, no layer library. Two formulations of a convolution compute the same
function: ``xla`` (``jax.lax.conv_general_dilated``) and ``patches`` (the kernel's taps gathered
by strided slices into one matrix, then a matrix product). ``auto`` takes the faster one on the
backend, as measured: on XLA:CPU ``patches`` (seeds trained together turn a convolution into a
grouped one, which XLA:CPU runs several times slower than matrix products; single seeds run
about equally); elsewhere ``xla`` (vendor convolution libraries).
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
FORMULATIONS = ("xla", "patches")
PATCHES_BACKENDS = ("cpu",)


def resolve_formulation(formulation: str) -> str:
    """The formulation to run: ``auto`` resolved for the default backend."""
    if formulation == "auto":
        return "patches" if jax.default_backend() in PATCHES_BACKENDS else "xla"
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation={formulation!r}: expected auto or one of "
                         f"{', '.join(FORMULATIONS)}")
    return formulation


def conv_patches(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """``conv_general_dilated(x, w, (stride, stride), "SAME")`` as one matrix product: each
    output position's kernel window (SAME padding, low side padded total // 2, as XLA does),
    taps in the kernel's row-major order, against the kernel reshaped to [taps * c_in, c_out]."""
    n, h, width, c_in = x.shape
    k_h, k_w, _, c_out = w.shape
    out_h, out_w = -(-h // stride), -(-width // stride)
    pad_h = max((out_h - 1) * stride + k_h - h, 0)
    pad_w = max((out_w - 1) * stride + k_w - width, 0)
    x = jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                    (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    taps = [jax.lax.slice(x, (0, i, j, 0),
                          (n, i + stride * (out_h - 1) + 1, j + stride * (out_w - 1) + 1, c_in),
                          (1, stride, stride, 1))
            for i in range(k_h) for j in range(k_w)]
    return jnp.concatenate(taps, axis=-1) @ w.reshape(k_h * k_w * c_in, c_out)


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


def apply_convnet(params: dict, images: jax.Array, stride: int = 2,
                  formulation: str = "xla") -> jax.Array:
    """Logits for a batch of NHWC images."""
    formulation = resolve_formulation(formulation)
    x = images
    for layer in params["convs"]:
        if formulation == "patches":
            x = conv_patches(x, layer["w"], stride)
        else:
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
    formulation: str = "auto",
) -> Task:
    """A small convnet classifier on a real image data set, evaluated on its test split;
    ``formulation`` (xla, patches or auto) chooses how its convolutions are computed."""
    channels = [int(c) for c in channels]
    resolve_formulation(formulation)  # a bad name fails here, before any data is read
    check_positive(image_size=image_size, batch_size=batch_size, stride=stride,
                   **{f"channels[{i}]": c for i, c in enumerate(channels)})
    if not channels:
        raise ValueError("channels=[]: a convnet needs at least one convolution")
    splits = image_splits(dataset, image_size, data_dir)
    in_channels = splits.image_shape[-1]
    apply = functools.partial(apply_convnet, stride=stride, formulation=formulation)

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
