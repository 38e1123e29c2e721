"""Run one planned run in a fresh process: ``python -m bench.worker < payload.json``.

The sweep starts one worker per run when runs are isolated, so that the process's peak RSS and
the device allocator's peak (which never resets inside a process) belong to that run alone.
The payload carries the run's resolved config; the worker writes the run's record itself and
exits 0, or non-zero if even that failed.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from omegaconf import OmegaConf  # noqa: E402

from bench.plan import PlannedRun  # noqa: E402
from bench.records import RecordStore  # noqa: E402


def payload(planned: PlannedRun, sweep_name: str, folder: Path) -> str:
    """What a worker needs to reproduce ``planned`` exactly, as JSON text."""
    config = {k: OmegaConf.to_container(planned.config[k], resolve=True)
              for k in ("optimizer", "task", "run")}
    config["seed"] = planned.seed
    return json.dumps({
        "optimizer": planned.optimizer, "task": planned.task, "seed": planned.seed,
        "overrides": list(planned.overrides), "optimizer_config": planned.optimizer_config,
        "config": config, "sweep": sweep_name, "folder": str(folder),
    })


def planned_from(data: dict[str, Any]) -> PlannedRun:
    return PlannedRun(data["optimizer"], data["task"], int(data["seed"]),
                      tuple(data["overrides"]), OmegaConf.create(data["config"]),
                      data["optimizer_config"])


def main() -> int:
    from bench.sweep import Sweep

    data = json.load(sys.stdin)
    planned = planned_from(data)
    row, curves = Sweep().execute(planned, data["sweep"], isolated=True)
    RecordStore(Path(data["folder"])).write(row, curves)
    return 0


if __name__ == "__main__":
    sys.exit(main())
