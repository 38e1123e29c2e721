"""Run one work item in a fresh process: ``python -m bench.sweep.worker < payload.json``.

The sweep starts one worker per work item (a run, or seeds trained together) when runs are
isolated, so that the process's peak RSS and the device allocator's peak (which never resets
inside a process) belong to that item alone, and so that items can run in parallel. The
payload carries the runs' resolved configs and where they run; the worker writes the records
itself and exits 0, or non-zero if even that failed.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench.records.store import RecordStore  # noqa: E402
from bench.sweep.checks import TaskCache  # noqa: E402
from bench.train.record import Where, run_work  # noqa: E402
from bench.train.spec import RunSpec  # noqa: E402


def run_in_process(work: Sequence[RunSpec], sweep_name: str, where: Where, seed_batching: str,
                   tasks: TaskCache) -> list[tuple[dict[str, Any], Any]]:
    """One work item in this process: a (row, curves) pair per run."""
    from optimizers import build_optimizer

    return run_work(work, sweep_name, where, seed_batching, tasks, build_optimizer)


@dataclass(frozen=True)
class Payload:
    """What a worker needs to reproduce a work item exactly: the runs, the sweep's name and
    folder, where they run, how seeds are batched, the compilation cache folder (or None) and
    when the worker was asked to start."""

    runs: list[dict[str, Any]]
    sweep_name: str
    folder: str
    where: dict[str, Any]
    seed_batching: str
    cache_dir: str | None
    launched_at: float


def payload(work: Sequence[RunSpec], sweep_name: str, folder: Path, where: Where,
            seed_batching: str, cache_dir: str | None) -> str:
    """The payload of ``work`` as JSON text, for the worker's stdin."""
    return json.dumps(dataclasses.asdict(Payload(
        [s.to_payload() for s in work], sweep_name, str(folder), dataclasses.asdict(where),
        seed_batching, cache_dir, time.time())))


def _stop_with_parent() -> None:
    """End this worker as soon as the sweep that started it is gone: its record would land
    after the sweep has stopped."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def main() -> int:
    import jax  # noqa: F401  (imported before the clock stops: part of the process start)

    ready = time.time()
    _stop_with_parent()
    text = sys.stdin.read()
    if not text:  # started ahead of need (bench.sweep.prestart) and not needed after all
        return 0
    job = Payload(**json.loads(text))
    if job.cache_dir is not None:
        from bench.sweep.compile_cache import enable

        enable(job.cache_dir)
    # How long the run waited for its process: the whole start, or none of it for a worker
    # started ahead while the sweep planned (bench.sweep.prestart).
    where = dataclasses.replace(Where(**job.where),
                                process_start_s=max(0.0, ready - job.launched_at))
    store = RecordStore(Path(job.folder))
    work = [RunSpec.from_payload(r) for r in job.runs]
    for row, curves in run_in_process(work, job.sweep_name, where, job.seed_batching,
                                      TaskCache()):
        store.write(row, curves)
    return 0


if __name__ == "__main__":
    sys.exit(main())
