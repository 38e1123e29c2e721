"""Meta-parameter checkpoints: one small ``.npz`` file holding the arrays of ``theta`` and a
JSON header with the format version, the architecture's name and its config, so that a file
cannot be loaded into another architecture (or another configuration of it) silently."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

FORMAT_VERSION = 1
_HEADER = "__header__"
# The meta-trained checkpoints shipped with the project (see the README there).
SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"
# Settings not part of a checkpoint's identity: the execution path (how an update is computed,
# not what it is) and small_fc_lopt's normalisation options (approximations of one rule over
# the same meta-parameters), so a checkpoint can be tried, and meta-trained further, under
# another. A run's identity still holds every setting.
EXECUTION_SETTINGS = ("path", "normalisation", "norm_stride")


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not belong to the architecture or config it is loaded into."""


def _config_dict(config: Any) -> dict[str, Any]:
    raw = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return json.loads(json.dumps(raw))  # tuples -> lists, as the header stores them


def _defaults(config: Any) -> dict[str, Any]:
    """A config's default settings: a setting added after a checkpoint was saved reads as its
    default there (a new setting's default keeps the behaviour from before it existed)."""
    if not dataclasses.is_dataclass(config):
        return {}
    fields = dataclasses.fields(config)
    return json.loads(json.dumps({f.name: f.default for f in fields
                                  if f.default is not dataclasses.MISSING}))


def save(path: str | os.PathLike, architecture: str, config: Any, theta: Any,
         extra: dict[str, Any] | None = None) -> Path:
    """Write ``theta`` with its architecture and config; atomic (temporary file + rename)."""
    path = Path(path)
    leaves, treedef = jax.tree.flatten(theta)
    header = {
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "config": _config_dict(config),
        "treedef": str(treedef),
        "num_leaves": len(leaves),
        **(extra or {}),
    }
    arrays = {f"leaf_{i:04d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    arrays[_HEADER] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def resolve(checkpoint: str | os.PathLike) -> Path:
    """A checkpoint file from a path, or from the name of a shipped checkpoint
    (``small_fc_lopt`` is optimizers/learned/checkpoints/small_fc_lopt.npz)."""
    path = Path(checkpoint)
    if path.is_file():
        return path
    shipped = SHIPPED_DIR / f"{path.name.removesuffix('.npz')}.npz"
    if shipped.is_file() and (path.parent == Path(".") or path.resolve() == shipped):
        return shipped
    names = sorted(p.stem for p in SHIPPED_DIR.glob("*.npz"))
    raise FileNotFoundError(f"optimizer.checkpoint={str(checkpoint)!r}: no such file, nor a "
                            f"shipped checkpoint of that name (shipped: {names})")


class CheckpointUnreadableError(ValueError):
    """A checkpoint file that is truncated, corrupt or not a checkpoint at all."""


@contextlib.contextmanager
def _opened(path: str | os.PathLike) -> Iterator[Any]:
    """``np.load(path)``, its failures turned into an error naming the file and the remedy."""
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            yield data
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        if isinstance(exc, CheckpointMismatchError):
            raise
        raise CheckpointUnreadableError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc}). Re-create it "
            "with its recipe (`make checkpoints`; optimizers/learned/checkpoints/README.md) or, "
            f"for a shipped one, restore it (git checkout -- {path}).") from exc


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    with _opened(path) as data:
        return json.loads(bytes(data[_HEADER]).decode())


def load(path: str | os.PathLike, architecture: str, config: Any, like: Any) -> Any:
    """Read ``theta`` saved by ``save``; ``like`` is a theta of the expected structure (e.g.
    from ``init_meta``). Raises ``CheckpointMismatchError`` on any disagreement."""
    path = resolve(path)
    header = read_header(path)
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"{path}: format version {header.get('format_version')}, expected {FORMAT_VERSION}")
    if header.get("architecture") != architecture:
        raise CheckpointMismatchError(
            f"{path} holds a {header.get('architecture')!r} optimizer, not {architecture!r}")
    expected = _config_dict(config)
    saved = {**_defaults(config), **header["config"]}
    diff = {k: (saved.get(k), v) for k, v in expected.items()
            if saved.get(k) != v and k not in EXECUTION_SETTINGS}
    if diff:
        raise CheckpointMismatchError(
            f"{path}: saved with another {architecture} config; (saved, requested): {diff}")
    like_leaves, treedef = jax.tree.flatten(like)
    with _opened(path) as data:
        leaves = [data[f"leaf_{i:04d}"] for i in range(header["num_leaves"])]
    if len(leaves) != len(like_leaves) or any(
            a.shape != np.shape(b) for a, b in zip(leaves, like_leaves)):
        raise CheckpointMismatchError(f"{path}: array shapes differ from {architecture}'s")
    return jax.tree.unflatten(treedef, [jax.numpy.asarray(x) for x in leaves])


def digest(checkpoint: str | os.PathLike) -> str:
    """A short hash of a checkpoint file's bytes: part of a run's identity, so that a run with
    re-trained meta-parameters is another run."""
    return hashlib.sha256(resolve(checkpoint).read_bytes()).hexdigest()[:16]


def trained_on(checkpoint: str | os.PathLike) -> str | None:
    """The task family a checkpoint was meta-trained on (``standard``: the standard task
    alone), from its recipe; None for a file without one."""
    recipe = read_header(resolve(checkpoint)).get("recipe")
    return None if recipe is None else recipe.get("family_name", "standard")
