"""Image data as task-ready splits: dicts of ``image`` and ``label`` arrays, and their specs."""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tasks.data.cache import fingerprint
from tasks.data.images import find_data_dir, load, split_fingerprint
from tasks.data.sources import get_source


class ImageSplits(NamedTuple):
    """Training and test arrays of one data set at one size, its number of classes, and the
    fingerprint of the files they were read from (``tasks.data.cache.fingerprint``)."""

    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    num_classes: int
    fingerprint: str

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.train["image"].shape[1:]


def image_splits(dataset: str, image_size: int, data_dir: str | os.PathLike | None = None,
                 flatten: bool = False) -> ImageSplits:
    """Both splits of ``dataset`` resized to ``image_size``; images as [N, H, W, C] (grey
    images get C = 1) or, with ``flatten``, as [N, H * W * C]."""
    source = get_source(dataset)
    folder = find_data_dir(source, data_dir)
    files = {split: split_fingerprint(source, folder, split) for split in ("train", "test")}
    out = []
    for split in ("train", "test"):
        images, labels = load(source, split, image_size, data_dir)
        images = images.reshape(len(images), -1) if flatten else (
            images[..., None] if images.ndim == 3 else images)
        out.append({"image": images, "label": labels})
    return ImageSplits(out[0], out[1], source.num_classes,
                       fingerprint({"dataset": source.name, "files": files}))


def abstract_image_batch(splits: ImageSplits, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes and dtypes of one training batch of ``splits``."""
    return {
        "image": jax.ShapeDtypeStruct((batch_size, *splits.image_shape), jnp.float32),
        "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32),
    }

