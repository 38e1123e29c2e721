"""Fashion-MNIST (Xiao et al. 2017, arXiv 1708.07747) from its standard IDX files.

Where the files are looked for, in order: the ``data_dir`` argument, the environment variable
``FASHION_MNIST_DIR``, then the Debian package ``dataset-fashion-mnist``'s install folder.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from tasks.data.idx import read_idx
from tasks.data.resize import resize_area

ENV_VAR = "FASHION_MNIST_DIR"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
NUM_CLASSES = 10
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
HOW_TO_GET = (
    "Fashion-MNIST was not found. Get it in one of these ways:\n"
    "  - on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist  (installs to {debian})\n"
    "  - or download the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,\n"
    "    t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz from\n"
    "    https://github.com/zalandoresearch/fashion-mnist into a folder and point to it with\n"
    "    task.data_dir=/that/folder or the environment variable {env}=/that/folder."
)


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a data set's files cannot be found; the message says how to get them."""


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def find_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the folder holding the four IDX files, or raise with instructions."""
    tried = []
    candidates = []
    if data_dir is not None:
        candidates.append(("task.data_dir", Path(data_dir)))
    elif os.environ.get(ENV_VAR):
        candidates.append((ENV_VAR, Path(os.environ[ENV_VAR])))
    else:
        candidates.append(("the Debian package's folder", DEBIAN_DIR))
    for origin, folder in candidates:
        stems = [stem for pair in _FILES.values() for stem in pair]
        missing = [s for s in stems if _find_file(folder, s) is None]
        if not missing:
            return folder
        tried.append(f"{origin} = {folder} (missing {', '.join(m + '[.gz]' for m in missing)})")
    message = HOW_TO_GET.format(debian=DEBIAN_DIR, env=ENV_VAR)
    raise DatasetNotFoundError(message + "\nLooked in: " + "; ".join(tried))


@functools.lru_cache(maxsize=8)
def _load_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_stem, label_stem = _FILES[split]
    images = read_idx(_find_file(folder, image_stem))
    labels = read_idx(_find_file(folder, label_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{folder}: {split} images {images.shape} and labels {labels.shape} disagree")
    return images, labels


def load(
    split: str, image_size: int = 28, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 [N, image_size, image_size] in [0, 1] and int32 labels [N].

    ``split`` is ``"train"`` (60,000 images) or ``"test"`` (10,000 images). The arrays are
    cached per process and read-only.
    """
    if split not in _FILES:
        raise ValueError(f"split={split!r}: expected one of {sorted(_FILES)}")
    if image_size < 1:
        raise ValueError(f"image_size={image_size}: must be a positive number of pixels")
    return _load_resized(find_data_dir(data_dir), split, image_size)


@functools.lru_cache(maxsize=8)
def _load_resized(folder: Path, split: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _load_split(folder, split)
    scaled = images.astype(np.float32) / 255.0
    if image_size != images.shape[1]:
        scaled = resize_area(scaled, image_size)
    labels = labels.astype(np.int32)
    scaled.flags.writeable = False
    labels.flags.writeable = False
    return scaled, labels
