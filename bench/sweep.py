"""The sweep entry point: ``python -m bench.sweep sweep=<preset> [overrides]``.

Plans every run of the preset and checks all of them (configs, hyperparameters, data, the
results folder) before any work; then runs them one by one, writing each run's record as it
finishes, skipping runs already recorded; finally merges the records into
``results/<name>/runs.parquet`` and ``curves.parquet`` and draws the figures.
"""

from __future__ import annotations

import os

# Device memory figures mean something only without JAX's up-front 75% reservation.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import datetime  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import hydra  # noqa: E402
import pandas as pd  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from bench.plan import PlannedRun, SweepConfigError, plan_runs  # noqa: E402
from bench.records import FINISHED, RecordStore  # noqa: E402
from optimizers.analytic import update_cost  # noqa: E402

_OOM_MARKERS = ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "OOM")


def _flat_columns(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    """One column per hyperparameter; lists and mappings become JSON text."""
    columns = {}
    for key, value in values.items():
        name = f"{prefix}{key.strip('_')}"
        columns[name] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return columns


def config_columns(planned: PlannedRun, sweep_name: str) -> dict[str, Any]:
    """The config part of a run's row: names, seed and one column per setting."""
    identity = planned.identity
    task_cfg = {k: v for k, v in identity["task"].items() if k not in ("_target_", "name")}
    analytic = update_cost(planned.optimizer_config)
    optimizer = identity["optimizer"]
    # Learned optimizers: whether their meta-parameters were trained (a checkpoint) or freshly
    # initialised, which is fine for cost measurements and meaningless for performance.
    meta_trained = optimizer.get("checkpoint") is not None if "checkpoint" in optimizer else None
    return {
        "run_id": planned.run_id,
        "sweep": sweep_name,
        "optimizer": planned.optimizer,
        "task": planned.task,
        "seed": planned.seed,
        "optimizer_config": planned.optimizer_config or None,
        "update_flops_per_param_analytic": None if analytic is None else analytic.flops,
        "update_bytes_per_param_analytic": None if analytic is None else analytic.bytes,
        "meta_trained": meta_trained,
        **_flat_columns("opt_", optimizer),
        **_flat_columns("task_", task_cfg),
        **_flat_columns("run_", identity["run"]),
    }


def run_settings(planned: PlannedRun):
    """The run's measurement settings as a ``RunSettings`` (which checks them)."""
    from bench.runner import RunSettings

    return RunSettings(**OmegaConf.to_container(planned.config.run, resolve=True))


class Sweep:
    """Builds tasks and optimizers for planned runs, caching each task across runs."""

    def __init__(self) -> None:
        self._tasks: dict[str, Any] = {}

    def task(self, cfg: DictConfig):
        key = json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True)
        if key not in self._tasks:
            self._tasks[key] = hydra.utils.instantiate(cfg, _convert_="all")
        return self._tasks[key]

    def check(self, runs: list[PlannedRun]) -> None:
        """Build every run's optimizer and task and its settings; fail on the first bad one."""
        from optimizers import build_optimizer

        for planned in runs:
            where = f"run {planned.optimizer}/{planned.task}/seed={planned.seed}"
            try:
                build_optimizer(planned.config.optimizer)
                run_settings(planned)
                self.task(planned.config.task)
            except SweepConfigError:
                raise
            except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
                raise SweepConfigError(f"{where}: {exc}") from exc
            except Exception as exc:  # Hydra's InstantiationException and the like
                raise SweepConfigError(f"{where}: {type(exc).__name__}: {exc}") from exc

    def execute(self, planned: PlannedRun, sweep_name: str,
                isolated: bool = False) -> tuple[dict[str, Any], Any]:
        """Run one planned run in this process; any failure becomes a row with status error or
        oom. ``isolated`` says whether this process runs nothing else (memory peaks are then
        the run's own)."""
        from bench.hardware import host_facts
        from bench.runner import run
        from optimizers import build_optimizer

        row = {**config_columns(planned, sweep_name), **host_facts()}
        started = time.perf_counter()
        row["started_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
        curves = None
        try:
            settings = run_settings(planned)
            result = run(self.task(planned.config.task), build_optimizer(planned.config.optimizer),
                         settings, seed=planned.seed)
            row.update(result.summary, status=result.status, error=None)
            curves = result.curves
        except Exception as exc:  # one failed run never stops a sweep
            message = f"{type(exc).__name__}: {exc}"
            oom = any(marker in message for marker in _OOM_MARKERS)
            row.update(status="oom" if oom else "error", error=message[:2000],
                       traceback="".join(traceback.format_exc())[-4000:])
        row["isolated"] = isolated
        row["wall_time_s"] = time.perf_counter() - started
        row["finished_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
        return row, curves


def run_isolated(planned: PlannedRun, sweep_name: str, store: RecordStore) -> dict[str, Any]:
    """Run ``planned`` in a fresh worker process and return the row it recorded.

    A worker that dies without recording (killed, out of host memory, a crash in native code)
    is recorded here with status oom (killed by SIGKILL, the kernel's OOM killer's signal) or
    error, and the tail of its output.
    """
    from bench.hardware import host_facts
    from bench.worker import payload

    started = datetime.datetime.now(datetime.timezone.utc).isoformat()
    clock = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench.worker"],
                          input=payload(planned, sweep_name, store.folder),
                          capture_output=True, text=True)
    row = store.read_row(planned.run_id)
    if proc.returncode == 0 and row is not None and row.get("started_at", "") >= started:
        return row
    killed = proc.returncode == -signal.SIGKILL
    tail = (proc.stderr or proc.stdout or "")[-2000:]
    row = {**config_columns(planned, sweep_name), **host_facts(), "started_at": started,
           "status": "oom" if killed or any(m in tail for m in _OOM_MARKERS) else "error",
           "error": f"worker exited with code {proc.returncode}: {tail}", "isolated": True,
           "wall_time_s": time.perf_counter() - clock,
           "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    store.write(row, None)
    return row


def should_isolate(setting: Any) -> bool:
    """``sweep.isolate``: true, false, or auto (isolate where the device keeps an allocator peak,
    which only a fresh process can attribute to one run)."""
    if isinstance(setting, bool):
        return setting
    if str(setting).lower() != "auto":
        raise SweepConfigError(f"sweep.isolate={setting!r}: expected true, false or auto")
    from bench.memory import peak_device_bytes

    return peak_device_bytes() is not None


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check"):
            pass
    except OSError as exc:
        raise SweepConfigError(f"results folder {folder} is not writable: {exc}") from exc


def _outcome(row: dict[str, Any]) -> str:
    if row["status"] == "ok":
        loss = row.get("final_eval_loss")
        return (f"ok: {'timing only' if loss is None else f'eval loss {loss:.4f}'}, step "
                f"{row['step_time_median_s'] * 1e6:.1f} us "
                f"({row['step_over_sgd_step']:.2f}x SGD's), state "
                f"{row['opt_state_floats_per_param']:.2f} floats/param")
    if row["status"] == "diverged":
        return f"diverged after {row.get('steps_completed')} steps"
    return f"{row['status']}: {row['error'][:200]}"


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task and optimizer: status counts, loss over seeds, step/update times, state size."""
    grouped = runs.groupby(["task", "optimizer"], sort=True)
    table = pd.DataFrame({
        "runs": grouped.size(),
        "ok": grouped.status.apply(lambda s: int((s == "ok").sum())),
        "params": grouped.num_params.first(),
        **({"train_loss_first": grouped.first_train_loss.mean(),
            "train_loss_final": grouped.final_train_loss.mean()}
           if "first_train_loss" in runs else {}),
        "eval_loss": grouped.final_eval_loss.mean(),
        "eval_loss_sd": grouped.final_eval_loss.std(),
        "step_us": grouped.step_time_median_s.median() * 1e6,
        "step/sgd": grouped.step_over_sgd_step.median(),
        "update_us": grouped.update_time_median_s.median() * 1e6,
        "state_floats/param": grouped.opt_state_floats_per_param.mean(),
        **({"eval_acc": grouped.final_eval_accuracy.mean()}
           if "final_eval_accuracy" in runs else {}),
    })
    return table.sort_values(["eval_loss"]).round(4)


def run_sweep(cfg: DictConfig, cli_overrides: list[str]) -> int:
    """Plan, check, execute and collect one sweep; returns the process exit code."""
    name = str(cfg.sweep.name)
    folder = Path(cfg.results_dir) / name

    def compose(overrides: list[str]) -> DictConfig:
        return hydra.compose(config_name="config", overrides=overrides)

    runs = plan_runs(OmegaConf.to_container(cfg.sweep, resolve=True), cli_overrides, compose)
    sweep = Sweep()
    sweep.check(runs)
    _check_writable(folder)
    store = RecordStore(folder)

    skip_statuses = () if cfg.sweep.force else FINISHED if cfg.sweep.retry_failed else (
        *FINISHED, "error", "oom")
    todo, skipped = [], 0
    for planned in runs:
        previous = store.read_row(planned.run_id)
        if previous is not None and previous.get("status") in skip_statuses:
            skipped += 1
        else:
            todo.append(planned)
    planned_ids = {r.run_id for r in runs}
    stale = sorted(store.run_ids() - planned_ids)
    if stale and cfg.sweep.prune:
        for rid in stale:
            store.set_aside(rid)
        print(f"set aside {len(stale)} records of runs this sweep no longer plans "
              f"(moved to {store.records / 'superseded'})")
    elif stale:
        print(f"note: {folder} holds {len(stale)} records of runs this sweep does not plan "
              "(other settings or a narrowed sweep); they stay in the tables. "
              "sweep.prune=true sets them aside.")
    print(f"sweep '{name}': {len(runs)} runs planned, {skipped} already recorded and skipped"
          f"{' (sweep.force=true reruns them)' if skipped else ''}, {len(todo)} to run; "
          f"results in {folder}/", flush=True)

    from bench.progress import Progress

    isolate = should_isolate(cfg.sweep.isolate)
    if todo:
        print("each run in a fresh process (sweep.isolate=false shares one: faster, but memory "
              "peaks are then not per run)" if isolate else
              "runs share this process: memory peaks are not per run (sweep.isolate=true)")
    progress = Progress(len(todo))
    for planned in todo:
        progress.start(f"{planned.optimizer} on {planned.task}, seed {planned.seed} "
                       f"(run {planned.run_id})")
        if isolate:
            row = run_isolated(planned, name, store)
        else:
            row, curves = sweep.execute(planned, name)
            store.write(row, curves)
        progress.finish(_outcome(row))

    table, curves = store.collect()
    runs_path, curves_path = store.write_tables(table, curves)
    this_sweep = table[table.run_id.isin(planned_ids)]
    print("\nResults (this sweep's runs):")
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(summary_table(this_sweep).to_string())
    print(f"\nstatus: {this_sweep.status.value_counts().to_dict()}")
    print(f"runs:    {runs_path}  ({len(table)} rows)")
    print(f"curves:  {curves_path}  ({len(curves)} rows)")
    if cfg.sweep.figures:
        from bench.plots import draw_sweep_figures

        paths = draw_sweep_figures(table, curves, folder / "figures")
        print(f"figures: {', '.join(str(p) for p in paths if p.suffix == '.png')} (+ PDF)")
    return 0


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    overrides = list(HydraConfig.get().overrides.task)
    try:
        code = run_sweep(cfg, overrides)
    except SweepConfigError as exc:
        print(f"error: {exc}\nNothing was run; no result was changed.", file=sys.stderr)
        code = 2
    except hydra.errors.HydraException as exc:
        print(f"error: {exc}\nNothing was run; no result was changed.", file=sys.stderr)
        code = 2
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
