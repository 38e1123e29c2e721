"""Fashion-MNIST loading, the area resize and the IDX reader."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from tasks.data import cache, fashion_mnist
from tasks.data import images as images_module
from tasks.data.idx import read_idx
from tasks.data.resize import area_weights, resize_area


@pytest.fixture(scope="module")
def train8():
    """The training split at 8x8."""
    return fashion_mnist.load("train", 8)


@pytest.fixture(scope="module")
def test8():
    """The test split at 8x8."""
    return fashion_mnist.load("test", 8)


def test_train_split_shape_and_range(train8):
    """load('train', 8) gives 60,000 float32 8x8 images in [0, 1] and int32 labels."""
    images, labels = train8
    assert images.shape == (60_000, 8, 8)
    assert images.dtype == np.float32
    assert labels.shape == (60_000,)
    assert labels.dtype == np.int32
    assert images.min() >= 0.0
    assert images.max() <= 1.0
    assert images.max() > 0.5  # not all black: the pixel scale is right


def test_test_split_shape(test8):
    """load('test', 8) gives 10,000 8x8 images and labels."""
    images, labels = test8
    assert images.shape == (10_000, 8, 8)
    assert labels.shape == (10_000,)
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_class_balance(train8, test8):
    """Exactly 6,000 training and 1,000 test images per class, for the 10 classes."""
    assert np.bincount(train8[1], minlength=10).tolist() == [6_000] * 10
    assert np.bincount(test8[1], minlength=10).tolist() == [1_000] * 10


def test_loaded_arrays_are_read_only(test8):
    """The cached arrays cannot be modified in place by a caller."""
    images, labels = test8
    assert not images.flags.writeable
    assert not labels.flags.writeable


def test_loading_is_deterministic(test8, tmp_path, monkeypatch):
    """Reading the files again (per-process cache cleared, an empty disk cache) and then again
    from the disk cache gives identical arrays."""
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    for _ in range(2):
        images_module._load.cache_clear()
        images, labels = fashion_mnist.load("test", 8)
        assert images is not test8[0]
        np.testing.assert_array_equal(images, test8[0])
        np.testing.assert_array_equal(labels, test8[1])
    assert list(tmp_path.glob("fashion_mnist-*.npz")), "the second load did not use a disk cache"
    images_module._load.cache_clear()


def test_resize_keeps_dataset_mean():
    """Full-size and 7x7 test images (an exact 4x4 box) have the same mean per image."""
    full, _ = fashion_mnist.load("test", 28)
    small, _ = fashion_mnist.load("test", 7)
    assert full.shape == (10_000, 28, 28)
    np.testing.assert_allclose(small.mean(axis=(1, 2)), full.mean(axis=(1, 2)), atol=1e-5)


def test_load_at_size_25():
    """Any positive image size loads, e.g. 25x25 (not a divisor of 28)."""
    images, _ = fashion_mnist.load("test", 25)
    assert images.shape == (10_000, 25, 25)


def test_resize_constant_image_stays_constant():
    """A constant image resizes to the same constant."""
    images = np.full((2, 28, 28), 0.37, dtype=np.float32)
    out = resize_area(images, 8)
    assert out.shape == (2, 8, 8)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 0.37, atol=1e-6)


def test_resize_preserves_mean():
    """Area resizing 28x28 -> 8x8 keeps each random image's mean to 1e-5."""
    images = np.random.default_rng(0).random((5, 28, 28)).astype(np.float32)
    out = resize_area(images, 8)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), images.mean(axis=(1, 2)), atol=1e-5)


@pytest.mark.parametrize(
    ("size_in", "size_out"),
    [(28, n) for n in range(1, 29)] + [(8, 28), (3, 7), (7, 3)],
)
def test_area_weights_rows_sum_to_one(size_in, size_out):
    """Every row of area_weights is a non-negative averaging row (sums to 1)."""
    weights = area_weights(size_in, size_out)
    assert weights.shape == (size_out, size_in)
    assert (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gz"])
def test_read_idx_round_trip(tmp_path, compressed):
    """read_idx returns exactly the uint8 array written as an IDX file (plain or .gz)."""
    array = np.random.default_rng(1).integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    data = _idx_bytes(array)
    if compressed:
        path = tmp_path / "images-idx3-ubyte.gz"
        path.write_bytes(gzip.compress(data))
    else:
        path = tmp_path / "images-idx3-ubyte"
        path.write_bytes(data)
    out = read_idx(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)


def test_read_idx_labels_round_trip(tmp_path):
    """A one-dimensional IDX file (labels) reads back as a vector."""
    labels = np.arange(10, dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(_idx_bytes(labels))
    np.testing.assert_array_equal(read_idx(path), labels)


def test_read_idx_rejects_truncated_file(tmp_path):
    """A file shorter than its header promises is rejected with ValueError."""
    array = np.zeros((3, 4, 5), dtype=np.uint8)
    path = tmp_path / "truncated-idx3-ubyte"
    path.write_bytes(_idx_bytes(array)[:-7])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_read_idx_rejects_bad_magic(tmp_path):
    """A file without the IDX magic number is rejected."""
    path = Path(tmp_path / "not-idx")
    path.write_bytes(b"PK\x03\x04" + bytes(16))
    with pytest.raises(ValueError, match="magic"):
        read_idx(path)
