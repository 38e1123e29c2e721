"""Fashion-MNIST (Xiao et al. 2017, arXiv 1708.07747) from its standard IDX files.

Where the files are looked for, in order: the ``data_dir`` argument, the environment variable
``FASHION_MNIST_DIR``, then the Debian package ``dataset-fashion-mnist``'s install folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tasks.data import images
from tasks.data.idx import IDX_FILES, read_idx_split
from tasks.data.images import DatasetNotFoundError

__all__ = ["DatasetNotFoundError", "NUM_CLASSES", "SOURCE", "find_data_dir", "load"]

ENV_VAR = "FASHION_MNIST_DIR"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
NUM_CLASSES = 10
HOW_TO_GET = (
    "Fashion-MNIST was not found. Get it in one of these ways:\n"
    "  - on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist\n"
    f"    (installs to {DEBIAN_DIR})\n"
    "  - or download the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,\n"
    "    t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz from\n"
    "    https://github.com/zalandoresearch/fashion-mnist into a folder and point to it with\n"
    f"    task.data_dir=/that/folder or the environment variable {ENV_VAR}=/that/folder."
)
SOURCE = images.ImageSource(
    name="fashion_mnist", env_var=ENV_VAR, default_dir=DEBIAN_DIR, files=IDX_FILES,
    read=read_idx_split, how_to_get=HOW_TO_GET, num_classes=NUM_CLASSES,
    train_size=60_000, test_size=10_000)


def find_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the folder holding the four IDX files, or raise with instructions."""
    return images.find_data_dir(SOURCE, data_dir)


def load(
    split: str, image_size: int = 28, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 [N, image_size, image_size] in [0, 1] and int32 labels [N].

    ``split`` is ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
    """
    return images.load(SOURCE, split, image_size, data_dir)
