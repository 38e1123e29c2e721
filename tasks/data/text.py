"""A character-level (byte-level) text corpus that exists on every machine, or a user's file.

The default corpus is a fixed list of modules of the Python standard library's source,
concatenated in order. The source changes between Python versions, so the list is pinned by
the SHA-256 of the concatenated text for each version it was checked on; any other text
raises an error that names the running Python version (then pass a text file). Tokens are the
UTF-8 bytes (a vocabulary of 256); the last ``eval_fraction`` of the text is the evaluation
split, so splits are deterministic. Reading is fast, so nothing is cached on disk.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sysconfig
from pathlib import Path

import numpy as np

from tasks.data.cache import content_digest, fingerprint

VOCAB_SIZE = 256
STDLIB_FILES = (
    "abc.py", "bisect.py", "colorsys.py", "fnmatch.py", "heapq.py", "textwrap.py", "string.py",
    "shlex.py", "difflib.py", "fractions.py", "queue.py", "sched.py", "calendar.py", "csv.py",
    "random.py", "statistics.py", "graphlib.py", "glob.py", "copy.py", "pprint.py",
)
# SHA-256 of the concatenated STDLIB_FILES, by Python "major.minor" (checked on 3.11.7).
STDLIB_SHA256 = {
    "3.11": "1293d807613b45c32c526f00c314212a38b9be2b4508859a00f9abcec5d9129d",
}


class CorpusMismatchError(RuntimeError):
    """The standard-library corpus differs from the pinned one (another Python version)."""


def stdlib_text(stdlib_dir: str | os.PathLike | None = None) -> bytes:
    """The pinned standard-library corpus, checked against its hash."""
    folder = Path(stdlib_dir or sysconfig.get_paths()["stdlib"])
    version = platform.python_version()
    try:
        text = b"".join((folder / name).read_bytes() for name in STDLIB_FILES)
    except FileNotFoundError as exc:
        raise CorpusMismatchError(
            f"Python {version}: a standard-library file of the pinned corpus is missing "
            f"({exc.filename}); pass a text file instead (task.text_file=/path/to/file.txt)"
        ) from exc
    digest = hashlib.sha256(text).hexdigest()
    minor = ".".join(version.split(".")[:2])
    pinned = STDLIB_SHA256.get(minor)
    if digest != pinned:
        known = ", ".join(sorted(STDLIB_SHA256))
        raise CorpusMismatchError(
            f"The standard-library corpus of Python {version} ({folder}) has SHA-256 {digest}, "
            f"which differs from the pinned {pinned or '(none for ' + minor + ')'}; the corpus is "
            f"pinned for Python {known}. Run under a pinned version, pass a text file "
            "(task.text_file=/path/to/file.txt), or add this version's hash to "
            "tasks.data.text.STDLIB_SHA256 after checking the files.")
    return text


def _raw(text_file: str | None) -> bytes:
    if text_file is None:
        return stdlib_text()
    path = Path(text_file)
    if not path.is_file():
        raise FileNotFoundError(f"text_file={text_file!r}: no such file")
    return path.read_bytes()


@functools.lru_cache(maxsize=4)
def _tokens(text_file: str | None, digest: str) -> np.ndarray:
    """The text's byte tokens; ``digest`` keys the memo, so that a changed file is read again."""
    del digest
    tokens = np.frombuffer(_raw(text_file), dtype=np.uint8).astype(np.int32)
    tokens.flags.writeable = False
    return tokens


@functools.cache
def _stdlib_digest() -> str:
    return hashlib.sha256(stdlib_text()).hexdigest()


def text_fingerprint(text_file: str | os.PathLike | None = None) -> str:
    """The fingerprint of the corpus (``tasks.data.cache.fingerprint`` of its SHA-256)."""
    if text_file is None:
        return fingerprint({"corpus": "stdlib", "sha256": _stdlib_digest()})
    path = Path(text_file)
    if not path.is_file():
        raise FileNotFoundError(f"text_file={str(text_file)!r}: no such file")
    return fingerprint({"corpus": "file", "sha256": content_digest(path)})


def load(split: str, text_file: str | os.PathLike | None = None,
         eval_fraction: float = 0.1) -> np.ndarray:
    """int32 byte tokens of ``split`` (``train``: the first 1 - eval_fraction of the text,
    ``test``: the rest)."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: expected 'train' or 'test'")
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction={eval_fraction}: must lie strictly between 0 and 1")
    name = None if text_file is None else str(text_file)
    tokens = _tokens(name, text_fingerprint(name))
    cut = int(round(len(tokens) * (1 - eval_fraction)))
    return tokens[:cut] if split == "train" else tokens[cut:]
