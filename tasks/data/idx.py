"""Reader for the IDX format of (Fashion-)MNIST: a big-endian header, then raw uint8 data.

Format: http://yann.lecun.com/exdb/mnist/ (magic 0x0000 0x08 <ndim>, then ndim uint32 sizes).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

_UBYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a uint8 array of the stored shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path} is truncated or corrupt ({type(exc).__name__}: {exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != _UBYTE:
        raise ValueError(
            f"{path}: only unsigned-byte IDX files are supported, got 0x{dtype_code:02x}")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {data.size} bytes (truncated?)")
    return data.reshape(shape)


# The standard file names of (Fashion-)MNIST, per split: images then labels.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, H, W] and labels [N] of one split from a folder of IDX files."""
    image_stem, label_stem = IDX_FILES[split]
    found = []
    for stem in (image_stem, label_stem):
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                found.append(folder / name)
                break
        else:
            raise FileNotFoundError(f"{folder}: no {stem}[.gz]")
    return read_idx(found[0]), read_idx(found[1])
