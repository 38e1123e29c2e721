"""Image classification data sets as float32 images in [0, 1] and int32 labels.

Every data set is read from its standard files in a folder (argument ``data_dir``, else an
environment variable, else a system folder where one exists); a missing one raises
``DatasetNotFoundError`` saying how to get it. Resizing (area averaging) and scaling are
deterministic; the processed arrays are cached on disk (``tasks.data.cache``) and per process.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.data.cache import cached_arrays, file_fingerprint
from tasks.data.resize import resize_area

SPLITS = ("train", "test")


class DatasetCorruptError(ValueError):
    """A data set's file is there but truncated or corrupt."""


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a data set's files cannot be found; the message says how to get them."""


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per data set
class ImageSource:
    """Where a data set's files live and how to read them.

    Attributes:
      name: data set name (``fashion_mnist``, ``mnist``, ``cifar10``).
      env_var: environment variable naming the folder.
      default_dir: folder looked in when neither the argument nor the variable is set.
      files: per split, the file stems that must exist (``stem`` or ``stem.gz``).
      read: ``read(folder, split) -> (uint8 [N, H, W] or [N, H, W, C], labels [N])``.
      how_to_get: instructions shown when the files are missing.
      num_classes: number of labels.
      train_size, test_size: the standard split sizes (for documentation and tests; files
        with other sizes are read as they are).
    """

    name: str
    env_var: str
    default_dir: Path | None
    files: dict[str, tuple[str, ...]]
    read: Callable[[Path, str], tuple[np.ndarray, np.ndarray]]
    how_to_get: str
    num_classes: int
    train_size: int
    test_size: int


def find_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem.gz`` or ``folder/stem``, whichever exists."""
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def find_data_dir(source: ImageSource, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding all of ``source``'s files, or raise with instructions."""
    if data_dir is not None:
        origin, folder = "task.data_dir", Path(data_dir)
    elif os.environ.get(source.env_var):
        origin, folder = source.env_var, Path(os.environ[source.env_var])
    elif source.default_dir is not None:
        origin, folder = "the default folder", source.default_dir
    else:
        raise DatasetNotFoundError(
            f"{source.how_to_get}\nNo folder was given: set task.data_dir or {source.env_var}.")
    stems = [stem for split in SPLITS for stem in source.files[split]]
    missing = [s for s in stems if find_file(folder, s) is None]
    if missing:
        raise DatasetNotFoundError(
            f"{source.how_to_get}\nLooked in {origin} = {folder} "
            f"(missing {', '.join(m + '[.gz]' for m in missing)})")
    return folder


def load(
    source: ImageSource, split: str, image_size: int, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 [N, size, size] (grey) or [N, size, size, C] in [0, 1], int32 labels.

    The arrays are read-only and shared per process; loading twice gives identical arrays.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {list(SPLITS)}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size={image_size!r}: must be a positive number of pixels")
    folder = find_data_dir(source, data_dir)
    return _load(source, folder, split, image_size, json.dumps(split_fingerprint(source, folder,
                                                                                 split)))


def split_fingerprint(source: ImageSource, folder: Path, split: str) -> list[list[Any]]:
    """Name, size and content digest of each file of ``split`` in ``folder``."""
    return file_fingerprint([find_file(folder, stem) for stem in source.files[split]])


@functools.lru_cache(maxsize=16)
def _load(source: ImageSource, folder: Path, split: str, image_size: int,
          files: str) -> tuple[np.ndarray, np.ndarray]:
    """The arrays of ``split``; ``files`` (its fingerprint, as text) keys the memo, so that a
    file changed in place is read again."""
    recipe = {"dataset": source.name, "split": split, "image_size": image_size,
              "files": json.loads(files)}

    def build():
        images, labels = read_checked(source, folder, split)
        return {"images": scale_and_resize(images, image_size), "labels": labels.astype(np.int32)}

    arrays = cached_arrays(source.name, recipe, build)
    images, labels = arrays["images"], arrays["labels"]
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def read_checked(source: ImageSource, folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split and check that images and labels agree; a file that cannot be read is
    an error naming it and saying how to get the data again."""
    try:
        images, labels = source.read(folder, split)
    except (ValueError, OSError, EOFError) as exc:
        raise DatasetCorruptError(
            f"{exc}\nThe {source.name} files in {folder} cannot be read: reinstall or download "
            f"them again.\n{source.how_to_get}") from exc
    if images.ndim not in (3, 4) or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{folder}: {split} images {images.shape} and labels {labels.shape} disagree")
    if labels.size and int(labels.max()) >= source.num_classes:
        raise ValueError(f"{folder}: {split} label {int(labels.max())} is out of range for "
                         f"{source.num_classes} classes")
    return images, labels


def scale_and_resize(images: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 images to float32 in [0, 1], area-resized to ``image_size`` (per channel)."""
    scaled = images.astype(np.float32) / 255.0
    if scaled.shape[1] == image_size and scaled.shape[2] == image_size:
        return scaled
    if scaled.ndim == 3:
        return resize_area(scaled, image_size)
    n, h, w, c = scaled.shape
    planes = np.moveaxis(scaled, 3, 1).reshape(n * c, h, w)
    return np.moveaxis(resize_area(planes, image_size).reshape(n, c, image_size, image_size), 1, 3)
