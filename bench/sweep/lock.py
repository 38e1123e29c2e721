"""One sweep per results folder: an OS file lock, released by the kernel when its process dies,
so a killed sweep never leaves a stale lock.

A whole sweep holds the folder's lock exclusively. The shards of a sharded sweep (disjoint
parts of one plan) hold it shared, each with an exclusive lock of its own shard, so shards run
side by side while a second copy of a shard, or a whole sweep, is refused. Collecting the
records into the tables (``sweep.collect_only``) holds it shared: it runs beside shards.

Shards that land on one host take turns on its devices (``device_turn``), so that a run timed
on a CPU or a GPU has it to itself, as ``timing_exclusive`` says, whichever shard it is in.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from bench.sweep.settings import SweepConfigError

LOCK_NAME = ".sweep.lock"


class FolderBusyError(SweepConfigError):
    """Another sweep holds the results folder (or this shard of it)."""


def _holders(folder: Path) -> str:
    """Who holds the folder's locks, as written into the lock files."""
    texts = []
    for path in sorted(folder.glob(".*.lock")):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text:
            texts.append(text)
    return "; ".join(dict.fromkeys(texts)) or "a process that has not written its PID yet"


class FolderLock:
    """``with FolderLock(folder, shard, num_shards):`` the folder is this sweep's (or this
    shard's) until the block ends or the process dies; a busy folder raises
    ``FolderBusyError`` naming the holder's PID."""

    def __init__(self, folder: Path, shard: int = 0, num_shards: int = 1,
                 collect_only: bool = False) -> None:
        self.folder, self.shard, self.num_shards = Path(folder), shard, num_shards
        self.collect_only = collect_only
        self._files: list[IO[str]] = []

    def _take(self, name: str, mode: int, what: str) -> None:
        handle = open(self.folder / name, "a+")  # noqa: SIM115  (held until release)
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            self.release()
            raise FolderBusyError(
                f"{self.folder} is in use by another sweep ({_holders(self.folder)}): {what} "
                "waits for it to finish, or use another sweep.name or results_dir") from None
        self._files.append(handle)
        handle.seek(0)
        handle.truncate()  # shared: no whole sweep holds it, so what it says is stale
        if mode == fcntl.LOCK_EX:
            handle.write(f"PID {os.getpid()} on {socket.gethostname()} since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()

    def __enter__(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.collect_only:
            self._take(LOCK_NAME, fcntl.LOCK_SH, "collecting")
        elif self.num_shards == 1:
            self._take(LOCK_NAME, fcntl.LOCK_EX, "this sweep")
        else:
            self._take(LOCK_NAME, fcntl.LOCK_SH, f"shard {self.shard}")
            self._take(f".shard-{self.shard}-of-{self.num_shards}.lock", fcntl.LOCK_EX,
                       f"shard {self.shard}")
        return self

    def release(self) -> None:
        for handle in reversed(self._files):
            handle.close()  # closing the file releases its lock
        self._files = []

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def device_turn(folder: Path, device: str, exclusive: bool) -> Iterator[None]:
    """Hold this host's ``device`` (``cpu`` or ``gpu<index>``) among the sweeps writing into
    ``folder``: exclusively for a run that times its steps, shared for a throughput-only one.
    Waits (saying so) while a shard on the same host holds it the other way."""
    host = socket.gethostname()
    with open(Path(folder) / f".{device}-{host}.turn", "a+") as handle:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for the {device} of {host}: another shard of this sweep runs on it",
                  flush=True)
            fcntl.flock(handle, mode)
        yield  # closing the file releases the lock
