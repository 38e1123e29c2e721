"""Atomic file writes: a killed process never leaves a partial file under the final name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# The mode of a new file under the user's umask, as ``open`` would give it (a temporary file
# is created 0600, which would make every record and table private to its writer).
FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through ``write(tmp_path)`` to a temporary file, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, FILE_MODE)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, say: name the file it was for (pyarrow names none)
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """A Parquet file as a DataFrame, read by path. (``pandas.read_parquet`` hands pyarrow a
    Python file object, whose reads run on pyarrow's IO threads; those threads then abort the
    interpreter at exit now and then: "terminate called without an active exception".)"""
    return pq.read_table(os.fspath(path), columns=columns).to_pandas()
