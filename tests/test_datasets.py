"""Loaders for MNIST, CIFAR-10 (on generated stand-ins), the text corpus and the disk cache."""

from __future__ import annotations

import hashlib
import pickle
import platform
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from tasks.data import cache, cifar10, images, mnist, text
from tasks.data.images import DatasetNotFoundError
from tests.standins import write_cifar10_standin, write_mnist_standin


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    """Each test has its own disk cache and an empty per-process cache."""
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    monkeypatch.delenv(cifar10.ENV_VAR, raising=False)
    images._load.cache_clear()
    yield
    images._load.cache_clear()


def test_mnist_standin_loads_resized(tmp_path):
    """MNIST files (a stand-in) load as float32 [N, 8, 8] in [0, 1] with int32 labels."""
    folder = write_mnist_standin(tmp_path / "mnist")
    x, y = mnist.load("train", 8, folder)
    assert x.shape == (600, 8, 8) and x.dtype == np.float32
    assert y.shape == (600,) and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert not x.flags.writeable
    assert mnist.load("test", 28, folder)[0].shape == (100, 28, 28)


def test_mnist_folder_from_environment(tmp_path, monkeypatch):
    """$MNIST_DIR names the folder when no data_dir is given."""
    folder = write_mnist_standin(tmp_path / "mnist")
    monkeypatch.setenv(mnist.ENV_VAR, str(folder))
    assert mnist.load("test", 8)[0].shape == (100, 8, 8)


def test_loading_twice_is_identical(tmp_path):
    """A second load (from the disk cache) and a third (rebuilt from the files after the cache
    is removed) give arrays identical to the first."""
    folder = write_mnist_standin(tmp_path / "mnist")
    first = mnist.load("train", 16, folder)
    images._load.cache_clear()
    assert list(cache.cache_dir().glob("mnist-*.npz")), "nothing was cached on disk"
    second = mnist.load("train", 16, folder)
    for path in cache.cache_dir().glob("*.npz"):
        path.unlink()
    images._load.cache_clear()
    third = mnist.load("train", 16, folder)
    for other in (second, third):
        np.testing.assert_array_equal(other[0], first[0])
        np.testing.assert_array_equal(other[1], first[1])


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    """A damaged cache file is ignored and rebuilt, giving the same arrays."""
    folder = write_mnist_standin(tmp_path / "mnist")
    first = mnist.load("test", 8, folder)
    (path,) = cache.cache_dir().glob("mnist-*.npz")
    path.write_bytes(b"not an npz file")
    images._load.cache_clear()
    np.testing.assert_array_equal(mnist.load("test", 8, folder)[0], first[0])


def test_changed_source_file_changes_cache_key(tmp_path):
    """Rewriting a source file (other content) is not served from the stale cache."""
    folder = write_mnist_standin(tmp_path / "mnist", seed=0)
    first = mnist.load("test", 8, folder)[0]
    write_mnist_standin(folder, test=120, seed=1)
    images._load.cache_clear()
    second = mnist.load("test", 8, folder)[0]
    assert second.shape == (120, 8, 8)
    assert not np.array_equal(second[:100], first)


def test_missing_mnist_says_how_to_get_it(tmp_path):
    """No folder, or an empty one: the error names the variable and where to download."""
    with pytest.raises(DatasetNotFoundError, match="MNIST_DIR"):
        mnist.load("train", 8)
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte"):
        mnist.load("train", 8, tmp_path)


def test_cifar10_standin_channels_and_sizes(tmp_path):
    """CIFAR-10 batches (a stand-in) load as [N, s, s, 3], planes in R, G, B order, train
    from the five data batches."""
    folder = write_cifar10_standin(tmp_path / "cifar")
    with open(folder / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    data = np.zeros((3, 3072), dtype=np.uint8)
    data[:, :1024], data[:, 1024:2048], data[:, 2048:] = 255, 0, 51
    batch[b"data"], batch[b"labels"] = data, [1, 2, 3]
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch, f)
    x, y = cifar10.load("test", 32, folder)
    assert x.shape == (3, 32, 32, 3)
    np.testing.assert_allclose(x[0, 5, 7], [1.0, 0.0, 0.2], atol=1e-6)
    assert y.tolist() == [1, 2, 3]
    small, labels = cifar10.load("train", 8, folder)
    assert small.shape == (500, 8, 8, 3) and labels.shape == (500,)


def test_missing_cifar10_says_how_to_get_it(tmp_path):
    """The error for a missing CIFAR-10 names the variable and the download page."""
    with pytest.raises(DatasetNotFoundError, match="cs.toronto.edu"):
        cifar10.load("train", 8, tmp_path)


def test_bad_image_size_and_split(tmp_path):
    """A non-positive image size or an unknown split is a ValueError naming the value."""
    folder = write_mnist_standin(tmp_path / "mnist")
    with pytest.raises(ValueError, match="image_size=0"):
        mnist.load("train", 0, folder)
    with pytest.raises(ValueError, match="'valid'"):
        mnist.load("valid", 8, folder)


def test_stdlib_corpus_matches_its_pin():
    """The pinned standard-library corpus loads; train + test is the whole text, in order."""
    raw = text.stdlib_text()
    assert hashlib.sha256(raw).hexdigest() in text.STDLIB_SHA256.values()
    train, test = text.load("train"), text.load("test")
    assert train.dtype == np.int32 and len(train) + len(test) == len(raw)
    assert len(test) == pytest.approx(0.1 * len(raw), abs=1)
    np.testing.assert_array_equal(np.concatenate([train, test]),
                                  np.frombuffer(raw, dtype=np.uint8))


def test_changed_corpus_raises_naming_python_version(tmp_path):
    """Standard-library files that differ from the pin raise an error naming the version."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in text.STDLIB_FILES:
        (tmp_path / name).write_bytes((stdlib / name).read_bytes())
    (tmp_path / text.STDLIB_FILES[0]).write_bytes(b"# changed\n")
    with pytest.raises(text.CorpusMismatchError, match=platform.python_version()):
        text.stdlib_text(tmp_path)


def test_user_text_file(tmp_path):
    """Any text file is a corpus: its bytes, split 90/10."""
    path = tmp_path / "corpus.txt"
    path.write_text("hello world " * 100)
    train, test = text.load("train", path), text.load("test", path)
    assert bytes(np.concatenate([train, test]).astype(np.uint8)) == path.read_bytes()
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        text.load("train", tmp_path / "missing.txt")
