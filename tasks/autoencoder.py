"""An MLP autoencoder: images through a narrow ReLU code and back, mean squared error.

The decoder ends in a sigmoid, so reconstructions lie in [0, 1] like the images. No labels,
no accuracy: its loss is not a classification loss and is never clipped when normalised.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from tasks.base import Task, check_positive, sequential_batches, shuffled_batches
from tasks.image_data import image_splits
from tasks.mlp import apply_mlp, init_mlp


def mlp_autoencoder(
    name: str = "fmnist_ae16",
    dataset: str = "fashion_mnist",
    image_size: int = 16,
    hidden_sizes: Sequence[int] = (128, 32, 128),
    batch_size: int = 128,
    eval_batch_size: int = 2500,
    data_dir: str | None = None,
) -> Task:
    """Reconstruct flattened images through ``hidden_sizes`` (the middle one is the code)."""
    hidden_sizes = [int(h) for h in hidden_sizes]
    check_positive(image_size=image_size, batch_size=batch_size,
                   **{f"hidden_sizes[{i}]": h for i, h in enumerate(hidden_sizes)})
    splits = image_splits(dataset, image_size, data_dir, flatten=True)
    train = {"image": splits.train["image"]}
    test = {"image": splits.test["image"]}
    inputs = splits.image_shape[0]

    def loss(params, batch):
        recon = jax.nn.sigmoid(apply_mlp(params, batch["image"]))
        return jnp.mean(jnp.square(recon - batch["image"]))

    return Task(
        name=name,
        data_fingerprint=splits.fingerprint,
        family="mlp_autoencoder",
        batch_size=batch_size,
        init=functools.partial(init_mlp, sizes=[inputs, *hidden_sizes, inputs]),
        loss=loss,
        train_batches=functools.partial(shuffled_batches, train, batch_size),
        train_arrays=train,
        eval_batches=functools.partial(sequential_batches, test, eval_batch_size),
        abstract_batch={"image": jax.ShapeDtypeStruct((batch_size, inputs), jnp.float32)},
    )
