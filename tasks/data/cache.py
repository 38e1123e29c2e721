"""A disk cache for processed data arrays (resized images), keyed by their source and recipe.

Arrays live in ``$LOPT_DATA_CACHE`` if set, else ``$XDG_CACHE_HOME/lopt-tradeoffs/data``
(``~/.cache/lopt-tradeoffs/data``). A key covers the source files' contents (a SHA-256 of
their bytes) plus the processing recipe, so a changed file or recipe is rebuilt, never served
stale, even where a file was rewritten with its old size and modification time. Files are
written atomically; an unreadable cache file is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

ENV_VAR = "LOPT_DATA_CACHE"
# Bump when the processing of cached arrays changes meaning.
RECIPE_VERSION = 1


def cache_dir() -> Path:
    """The folder for cached arrays (created on first write)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lopt-tradeoffs" / "data"


# Content digests already computed in this process, by everything a rewrite changes (a write
# always moves ctime, which no tool sets back).
_DIGESTS: dict[tuple[Any, ...], str] = {}


def content_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, remembered by its path, inode, size, mtime and ctime."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def file_fingerprint(paths: Iterable[Path]) -> list[list[Any]]:
    """Name, size and content digest of each source file."""
    return [[Path(p).name, Path(p).stat().st_size, content_digest(Path(p))] for p in paths]


def fingerprint(parts: Any) -> str:
    """``data-`` and 16 hex digits of a hash of JSON-able ``parts`` (file fingerprints)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return "data-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_key(recipe: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-able recipe."""
    text = json.dumps({"version": RECIPE_VERSION, **recipe}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cached_arrays(
    name: str, recipe: Mapping[str, Any], build: Callable[[], Mapping[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Arrays stored under ``name`` and ``recipe``; ``build()`` makes them on a miss."""
    path = cache_dir() / f"{name}-{cache_key(recipe)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {key: stored[key] for key in stored.files}
        except (OSError, ValueError, EOFError):
            pass  # a truncated or foreign file: rebuild it below
    arrays = {key: np.ascontiguousarray(value) for key, value in build().items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".npz", delete=False) as f:
            np.savez(f, **arrays)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(f.name, 0o666 & ~mask)  # a temporary file is private; the cache need not be
        os.replace(f.name, path)
    except OSError:
        pass  # a read-only cache folder costs time, not correctness
    return arrays
