"""Run a sweep's work items: in this process, or each in a fresh worker process, one at a time
or ``sweep.jobs`` at a time; every run's record is written as it finishes."""

from __future__ import annotations

import dataclasses
import datetime
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.records.store import RecordStore
from bench.sweep.checks import TaskCache
from bench.sweep.lock import device_turn
from bench.sweep.pool import Placement, run_pool, visible_gpus
from bench.sweep.progress import Progress
from bench.sweep.report import outcome
from bench.sweep.settings import SweepConfigError, SweepSettings
from bench.sweep.worker import payload, run_in_process
from bench.train.record import Where, failed_rows, failure_status
from bench.train.spec import RunSpec

# Worker processes running now, so that a stopped sweep can stop them (``stop_workers``).
_LIVE: set[subprocess.Popen] = set()
_STOPPING = threading.Event()


def stop_workers() -> int:
    """Stop every running worker (a sweep that was told to stop); returns how many. Their runs
    are not recorded: a rerun does them."""
    from bench.sweep import prestart

    _STOPPING.set()
    prestart.stop()
    live = list(_LIVE)
    for proc in live:
        proc.kill()
    return len(live)


def run_isolated(work: Sequence[RunSpec], sweep_name: str, store: RecordStore, where: Where,
                 seed_batching: str, cache_dir: str | None,
                 env: dict[str, str]) -> list[dict[str, Any]]:
    """Run a work item in a fresh worker process and return the rows it recorded.

    A worker that dies without recording (killed, out of host memory, a crash in native code)
    is recorded here with status oom (killed by SIGKILL, the kernel's OOM killer's signal) or
    error, and the tail of its output.
    """
    from bench.sweep import prestart

    started = datetime.datetime.now(datetime.timezone.utc).isoformat()
    clock = time.perf_counter()
    proc = prestart.take(env)
    _LIVE.add(proc)
    try:
        stdout, stderr = proc.communicate(payload(work, sweep_name, store.folder, where,
                                                  seed_batching, cache_dir))
    finally:
        _LIVE.discard(proc)
    if _STOPPING.is_set():
        return []
    rows = [store.read_row(s.run_id) for s in work]
    if proc.returncode == 0 and all(r is not None and r.get("started_at", "") >= started
                                    for r in rows):
        return rows
    tail = (stderr or stdout or "")[-2000:]
    code = proc.returncode
    how = (f"worker killed by {signal.Signals(-code).name}" if code < 0 and -code in
           signal.valid_signals() else f"worker exited with code {code}")
    out = failed_rows(work, sweep_name, where, failure_status(tail), f"{how}: {tail}",
                      started, time.perf_counter() - clock)
    for row in out:
        store.write(row, None)
    return out


def should_isolate(setting: Any, jobs: int = 1) -> bool:
    """``sweep.isolate``: true, false, or auto (isolate where the device keeps an allocator peak,
    which only a fresh process can attribute to one run, or where runs go in parallel)."""
    if isinstance(setting, bool):
        return setting
    if str(setting).lower() != "auto":
        raise SweepConfigError(f"sweep.isolate={setting!r}: expected true, false or auto")
    if jobs > 1:
        return True
    from bench.measure.memory import peak_device_bytes

    return peak_device_bytes() is not None


def _is_exclusive(work: Sequence[RunSpec]) -> bool:
    """A timing-grade item: it times its steps, so it must have the machine to itself."""
    return not work[0].vmapped and bool(work[0].config.run.get("timing", True))


def _label(work: Sequence[RunSpec]) -> str:
    first = work[0]
    seeds = ",".join(str(w.seed) for w in work)
    return (f"{first.optimizer} on {first.task}, seed{'s' if len(work) > 1 else ''} {seeds}"
            f"{' (vmapped)' if first.vmapped else ''}")


def execute(todo: list[list[RunSpec]], store: RecordStore, settings: SweepSettings,
            isolate: bool, tasks: TaskCache) -> None:
    """Run the work items, in this process or in workers (``sweep.jobs`` at a time)."""
    name = settings.name
    cache = settings.compile_cache
    if cache is not None and not Path(cache).is_absolute():
        cache = str(Path.cwd() / cache)
    gpus = visible_gpus() if isolate else []
    print("each run in a fresh process (sweep.isolate=false shares one: faster, but memory "
          "peaks are then not per run)" if isolate else
          "runs share this process: memory peaks are not per run (sweep.isolate=true)")
    if settings.jobs > 1:
        print(f"up to {settings.jobs} workers at once"
              f"{f', one per GPU ({len(gpus)} GPUs)' if gpus else ''}; timing-grade runs "
              f"{'have a GPU each' if gpus else 'run alone'}")
    progress = Progress(sum(len(work) for work in todo))

    def where(placement: Placement) -> Where:
        return Where(isolated=isolate, compile_cache=cache is not None,
                     **dataclasses.asdict(placement))

    def turn(work: Sequence[RunSpec], gpu: str | None):
        """The device, held against other shards on this host (a GPU: every run has it alone)."""
        device = "cpu" if gpu is None else f"gpu{gpu}"
        return device_turn(store.folder, device, gpu is not None or _is_exclusive(work))

    if not isolate:
        if cache is not None:
            from bench.sweep.compile_cache import enable

            enable(cache)
        for work in todo:
            progress.start(_label(work))
            with turn(work, None):
                for row, curves in run_in_process(work, name, where(Placement(True, 1)),
                                                  settings.seed_batching, tasks):
                    store.write(row, curves)
                    progress.finish(outcome(row), _label(work) if len(work) > 1 else None)
        return

    def launch(work: list[RunSpec], placement: Placement) -> list[dict[str, Any]]:
        with turn(work, placement.gpu):
            return run_isolated(work, name, store, where(placement), settings.seed_batching,
                                cache, placement.env())

    if settings.jobs == 1:
        for work in todo:
            progress.start(_label(work))
            for row in launch(work, Placement(True, 1, gpus[0] if gpus else None)):
                progress.finish(outcome(row), _label(work) if len(work) > 1 else None)
        return
    for work, _, rows in run_pool(todo, settings.jobs, _is_exclusive, launch, gpus):
        for row in rows:
            progress.finish(outcome(row), f"{_label(work)}, seed {row['seed']}")
