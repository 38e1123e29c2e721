"""MNIST (LeCun et al. 1998) from its four standard IDX files in a folder.

The folder is the ``data_dir`` argument or the environment variable ``MNIST_DIR``; nothing is
downloaded.
"""

from __future__ import annotations

import os

import numpy as np

from tasks.data import images
from tasks.data.idx import IDX_FILES, read_idx_split

ENV_VAR = "MNIST_DIR"
NUM_CLASSES = 10
HOW_TO_GET = (
    "MNIST was not found. Download the four files train-images-idx3-ubyte.gz,\n"
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (for\n"
    "example from https://ossci-datasets.s3.amazonaws.com/mnist/, a mirror of\n"
    "http://yann.lecun.com/exdb/mnist/) into a folder and point to it with\n"
    f"task.data_dir=/that/folder or the environment variable {ENV_VAR}=/that/folder."
)
SOURCE = images.ImageSource(
    name="mnist", env_var=ENV_VAR, default_dir=None, files=IDX_FILES, read=read_idx_split,
    how_to_get=HOW_TO_GET, num_classes=NUM_CLASSES, train_size=60_000, test_size=10_000)


def load(
    split: str, image_size: int = 28, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 [N, image_size, image_size] in [0, 1] and int32 labels [N]."""
    return images.load(SOURCE, split, image_size, data_dir)
