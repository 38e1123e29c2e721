"""Save and restore a whole pytree (meta-training state) atomically, checked against a template
of the same structure so that a file from another configuration is refused, not misread."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

_HEADER = "__header__"


def replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then rename it over ``path``: a kill
    leaves the old file or the new one, never half of either."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_tree(path: str | os.PathLike, tree: Any, header: dict[str, Any]) -> None:
    """Write the leaves of ``tree`` and a JSON ``header`` to ``path`` (temporary file, then
    rename: a kill never leaves a half-written file)."""
    leaves, treedef = jax.tree.flatten(tree)
    arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    full = {**header, "treedef": str(treedef), "num_leaves": len(leaves)}
    arrays[_HEADER] = np.frombuffer(json.dumps(full).encode(), dtype=np.uint8)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    replace_atomically(Path(path), write)


def load_tree(path: str | os.PathLike, like: Any) -> tuple[Any, dict[str, Any]]:
    """The tree saved at ``path``, given ``like`` of the same structure; and its header."""
    leaves_like, treedef = jax.tree.flatten(like)
    with np.load(path) as data:
        header = json.loads(bytes(data[_HEADER]).decode())
        if header["treedef"] != str(treedef):
            raise ValueError(f"{path}: saved by a different meta-training configuration "
                             "(state structure differs); use another output folder or delete it")
        leaves = [data[f"leaf_{i:05d}"] for i in range(header["num_leaves"])]
    for saved, expected in zip(leaves, leaves_like):
        if saved.shape != np.shape(expected) or saved.dtype != np.asarray(expected).dtype:
            raise ValueError(f"{path}: array {saved.shape}/{saved.dtype} where the configuration "
                             f"gives {np.shape(expected)}/{np.asarray(expected).dtype}")
    return jax.tree.unflatten(treedef, [jax.numpy.asarray(x) for x in leaves]), header
