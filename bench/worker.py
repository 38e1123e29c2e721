"""Run one work item in a fresh process: ``python -m bench.worker < payload.json``.

The sweep starts one worker per work item (a run, or seeds trained together) when runs are
isolated, so that the process's peak RSS and the device allocator's peak (which never resets
inside a process) belong to that item alone, and so that items can run in parallel. The
payload carries the runs' resolved configs and where they run; the worker writes the records
itself and exits 0, or non-zero if even that failed.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from omegaconf import OmegaConf  # noqa: E402

from bench.plan import PlannedRun  # noqa: E402
from bench.records import RecordStore  # noqa: E402


def _run_payload(planned: PlannedRun) -> dict[str, Any]:
    config = {k: OmegaConf.to_container(planned.config[k], resolve=True)
              for k in ("optimizer", "task", "run")}
    config["seed"] = planned.seed
    return {"optimizer": planned.optimizer, "task": planned.task, "seed": planned.seed,
            "overrides": list(planned.overrides), "optimizer_config": planned.optimizer_config,
            "config": config, "code_version": planned.code_version, "vmapped": planned.vmapped}


def payload(work: list[PlannedRun], sweep_name: str, folder: Path,
            context: dict[str, Any]) -> str:
    """What a worker needs to reproduce ``work`` exactly, as JSON text. ``context`` holds the
    columns about where it runs, and ``cache_dir`` (the compilation cache, or None)."""
    return json.dumps({"runs": [_run_payload(p) for p in work], "sweep": sweep_name,
                       "folder": str(folder), "context": context, "launched_at": time.time()})


def planned_from(data: dict[str, Any]) -> PlannedRun:
    return PlannedRun(data["optimizer"], data["task"], int(data["seed"]),
                      tuple(data["overrides"]), OmegaConf.create(data["config"]),
                      data["optimizer_config"], data["code_version"], data["vmapped"])


def main() -> int:
    import jax  # noqa: F401  (imported before the clock stops: part of the process start)

    from bench.sweep import Sweep

    ready = time.time()
    text = sys.stdin.read()
    if not text:  # started ahead of need (bench.prestart) and not needed after all
        return 0
    data = json.loads(text)
    context = dict(data["context"])
    cache = context.pop("cache_dir", None)
    if cache is not None:
        from bench.compile_cache import enable

        enable(cache)
    # How long the run waited for its process: the whole start, or none of it for a worker
    # started ahead while the sweep planned (bench.prestart).
    context["process_start_s"] = max(0.0, ready - data["launched_at"])
    store = RecordStore(Path(data["folder"]))
    for row, curves in Sweep().execute([planned_from(r) for r in data["runs"]], data["sweep"],
                                       context):
        store.write(row, curves)
    return 0


if __name__ == "__main__":
    sys.exit(main())
