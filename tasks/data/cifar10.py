"""CIFAR-10 (Krizhevsky 2009) from the standard "python version" batches in a folder.

The folder (``data_dir`` argument or ``$CIFAR10_DIR``) holds ``data_batch_1`` ...
``data_batch_5`` and ``test_batch`` (the contents of ``cifar-10-batches-py``). Each is a
pickled dict with ``data`` (uint8 [10000, 3072], the red, green and blue 32x32 planes in turn)
and ``labels``; nothing is downloaded. The batches are pickles: only point this at files you
trust.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from tasks.data import images

ENV_VAR = "CIFAR10_DIR"
NUM_CLASSES = 10
FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
HOW_TO_GET = (
    "CIFAR-10 was not found. Download 'CIFAR-10 python version' (cifar-10-python.tar.gz) from\n"
    "https://www.cs.toronto.edu/~kriz/cifar.html, unpack it, and point to the folder\n"
    "cifar-10-batches-py (data_batch_1..5, test_batch) with task.data_dir=/that/folder or\n"
    f"the environment variable {ENV_VAR}=/that/folder."
)


def read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 32, 32, 3] and labels [N] of one split, batches in file order."""
    data, labels = [], []
    for stem in FILES[split]:
        with open(images.find_file(folder, stem), "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        raw = np.asarray(batch[b"data"], dtype=np.uint8)
        if raw.ndim != 2 or raw.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{folder / stem}: data has shape {raw.shape}, expected [N, 3072]")
        data.append(raw.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch[b"labels"], dtype=np.uint8))
    return np.concatenate(data), np.concatenate(labels)


SOURCE = images.ImageSource(
    name="cifar10", env_var=ENV_VAR, default_dir=None, files=FILES, read=read_split,
    how_to_get=HOW_TO_GET, num_classes=NUM_CLASSES, train_size=50_000, test_size=10_000)


def load(
    split: str, image_size: int = 32, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 [N, image_size, image_size, 3] in [0, 1] and int32 labels [N]."""
    return images.load(SOURCE, split, image_size, data_dir)
