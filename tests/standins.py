"""Generated STAND-INS for data sets that cannot be had offline (MNIST, CIFAR-10).

They have the standard files' layout and formats but random content and few images: for
testing loaders and task plumbing only, never for results.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _images(rng: np.random.Generator, labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Noise whose brightness grows with the label, so a classifier has something to learn."""
    noise = rng.integers(0, 96, size=(len(labels), *shape))
    return (noise + 16 * labels.reshape(-1, *[1] * len(shape))).astype(np.uint8)


def write_mnist_standin(folder: Path, train: int = 600, test: int = 100, seed: int = 0) -> Path:
    """Four uncompressed IDX files in MNIST's layout (28x28 grey, 10 classes)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
            _idx_bytes(_images(rng, labels, (28, 28))))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx_bytes(labels))
    return folder


def write_cifar10_standin(folder: Path, per_batch: int = 100, seed: int = 0) -> Path:
    """data_batch_1..5 and test_batch in CIFAR-10's python layout (pickled dicts with
    b"data" uint8 [N, 3072] as R, G, B planes, and b"labels")."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, size=per_batch)
        data = _images(rng, labels, (3 * 32 * 32,))
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels.tolist(),
                         b"batch_label": b"STAND-IN, not CIFAR-10"}, f)
    return folder
