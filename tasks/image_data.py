"""Image data as task-ready splits: dicts of ``image`` and ``label`` arrays, and their specs."""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tasks.data.images import load
from tasks.data.sources import get_source


class ImageSplits(NamedTuple):
    """Training and test arrays of one data set at one size, and its number of classes."""

    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.train["image"].shape[1:]


def image_splits(dataset: str, image_size: int, data_dir: str | os.PathLike | None = None,
                 flatten: bool = False) -> ImageSplits:
    """Both splits of ``dataset`` resized to ``image_size``; images as [N, H, W, C] (grey
    images get C = 1) or, with ``flatten``, as [N, H * W * C]."""
    source = get_source(dataset)
    out = []
    for split in ("train", "test"):
        images, labels = load(source, split, image_size, data_dir)
        images = images.reshape(len(images), -1) if flatten else (
            images[..., None] if images.ndim == 3 else images)
        out.append({"image": images, "label": labels})
    return ImageSplits(out[0], out[1], source.num_classes)


def abstract_image_batch(splits: ImageSplits, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes and dtypes of one training batch of ``splits``."""
    return {
        "image": jax.ShapeDtypeStruct((batch_size, *splits.image_shape), jnp.float32),
        "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32),
    }


def check_positive(**values: int) -> None:
    """Raise a ValueError naming every setting that is not a positive integer."""
    bad = {k: v for k, v in values.items()
           if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1}
    if bad:
        raise ValueError(", ".join(f"{k}={v!r}" for k, v in bad.items())
                         + ": must be positive integers")
