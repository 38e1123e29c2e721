"""The row a run records: its config, the machine, where it ran, and what it measured.

Every column of a record is written here or by the code this module calls (the measuring and
training code), so that the code version, which hashes these folders, covers every number a
record holds. A failed work item still gives a row per run, with status error or oom.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.measure.hardware import host_facts
from bench.train.settings import RunSettings
from bench.train.spec import RunSpec
from optimizers.analytic import update_cost
from optimizers.learned import checkpoint

OOM_MARKERS = ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "OOM")


@dataclass(frozen=True)
class Where:
    """Where and beside what a work item ran (record columns of the same names).

    Attributes:
      isolated: in a fresh worker process of its own.
      timing_exclusive: nothing else ran on its device meanwhile.
      concurrent_jobs: the most work items the sweep allowed at once.
      gpu: the GPU index given to its worker, or None.
      compile_cache: JAX's persistent compilation cache was on.
      process_start_s: how long the item waited for its process to start.
    """

    isolated: bool = False
    timing_exclusive: bool = True
    concurrent_jobs: int = 1
    gpu: str | None = None
    compile_cache: bool = False
    process_start_s: float = 0.0


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def setting_columns(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """One column per setting: lists stay lists (Parquet list columns), mappings become one
    column per entry (``prefix + key + '_' + entry``)."""
    columns: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key.strip('_')}"
        if isinstance(value, Mapping):
            columns.update(setting_columns(f"{name}_", value))
        else:
            columns[name] = list(value) if isinstance(value, (list, tuple)) else value
    return columns


def config_columns(spec: RunSpec, sweep_name: str) -> dict[str, Any]:
    """The config part of a run's row: names, seed, the arm and one column per setting."""
    identity = spec.identity
    task_cfg = {k: v for k, v in identity["task"].items() if k not in ("_target_", "name")}
    analytic = update_cost(spec.optimizer_config)
    optimizer = identity["optimizer"]
    # Learned optimizers: whether their meta-parameters were trained (a checkpoint) or freshly
    # initialised, which is fine for cost measurements and meaningless for performance.
    meta_trained = optimizer.get("checkpoint") is not None if "checkpoint" in optimizer else None
    trained_on = checkpoint.trained_on(optimizer["checkpoint"]) if meta_trained else None
    return {
        "run_id": spec.run_id,
        "config_id": spec.config_id,
        "code_version": spec.code_version,
        "sweep": sweep_name,
        "optimizer": spec.optimizer,
        "optimizer_name": spec.optimizer_name or spec.optimizer,
        "arm": dict(spec.arm) or None,
        "tuned_from": spec.tuned_from,
        "task": spec.task,
        "seed": spec.seed,
        "optimizer_config": spec.optimizer_config or None,
        "data_fingerprint": spec.data_fingerprint,
        "update_flops_per_param_analytic": None if analytic is None else analytic.flops,
        "update_bytes_per_param_analytic": None if analytic is None else analytic.bytes,
        "meta_trained": meta_trained,
        "meta_trained_on": trained_on,
        "checkpoint_digest": spec.checkpoint_digest,
        **setting_columns("opt_", optimizer),
        **setting_columns("task_", task_cfg),
        **setting_columns("run_", identity["run"]),
    }


def run_settings(config: DictConfig) -> RunSettings:
    """The ``run.*`` settings of a composed config, checked."""
    return RunSettings(**OmegaConf.to_container(config.run, resolve=True))


def base_rows(work: Sequence[RunSpec], sweep_name: str, where: Where) -> list[dict[str, Any]]:
    return [{**config_columns(s, sweep_name), **host_facts(), **dataclasses.asdict(where)}
            for s in work]


def failure_status(message: str) -> str:
    """``oom`` where the message says memory ran out, else ``error`` (a signal alone does not
    say why a process was killed)."""
    return "oom" if any(m in message for m in OOM_MARKERS) else "error"


def run_work(work: Sequence[RunSpec], sweep_name: str, where: Where, seed_batching: str,
             task_for: Callable[[DictConfig], Any], optimizer_for: Callable[[DictConfig], Any],
             ) -> list[tuple[dict[str, Any], Any]]:
    """Run one work item (a run, or seeds trained together) in this process: a (row, curves)
    pair per run. Any failure becomes rows with status error or oom and the message."""
    from bench.train.run import run

    rows = base_rows(work, sweep_name, where)
    started, began = time.perf_counter(), _now()
    results: list[Any] = [None] * len(work)
    try:
        first = work[0]
        settings = run_settings(first.config)
        task, tx = task_for(first.config.task), optimizer_for(first.config.optimizer)
        if task.data_fingerprint != first.data_fingerprint:
            raise ValueError(f"task {first.task}: its data changed since the sweep was planned "
                             f"(fingerprint {task.data_fingerprint}, planned "
                             f"{first.data_fingerprint}); run the sweep again")
        results = run(task, tx, settings, [s.seed for s in work], seed_batching,
                      time_steps=not first.vmapped)
    except Exception as exc:  # one failed run never stops a sweep
        message = f"{type(exc).__name__}: {exc}"
        for row in rows:
            row.update(status=failure_status(message), error=message[:2000],
                       traceback="".join(traceback.format_exc())[-4000:])
    finished = _now()
    out = []
    for row, result in zip(rows, results):
        if result is not None:
            row.update(result.summary, status=result.status, error=None)
        row.update(started_at=began, finished_at=finished, run_s=time.perf_counter() - started)
        out.append((row, None if result is None else result.curves))
    return out


def failed_rows(work: Sequence[RunSpec], sweep_name: str, where: Where, status: str,
                message: str, started_at: str, run_s: float) -> list[dict[str, Any]]:
    """Rows for runs whose worker died before recording them."""
    return [{**row, "started_at": started_at, "status": status, "error": message,
             "run_s": run_s, "finished_at": _now()}
            for row in base_rows(work, sweep_name, where)]
