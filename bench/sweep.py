"""The sweep entry point: ``python -m bench.sweep sweep=<preset> [overrides]``.

Plans every run of the preset and checks all of them (configs, hyperparameters, data, the
results folder) before any work; then runs the runs not yet recorded (one by one, or
``sweep.jobs`` at a time, or this shard's part of them under a cluster launcher), writing each
run's record as it finishes; finally merges the records into ``results/<name>/runs.parquet``
and ``curves.parquet`` and draws the figures.
"""

from __future__ import annotations

import os

# Device memory figures mean something only without JAX's up-front 75% reservation.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

if __name__ == "__main__":  # the first worker starts while this process imports and plans
    import sys

    from bench.prestart import start_for_sweep

    start_for_sweep(sys.argv[1:])

import datetime  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import hydra  # noqa: E402
import pandas as pd  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from bench.code_version import code_version  # noqa: E402
from bench.plan import (  # noqa: E402
    CachedCompose,
    PlannedRun,
    SweepConfigError,
    config_groups,
    plan_runs,
    seed_groups,
    shard,
)
from bench.pool import Placement, run_pool, visible_gpus  # noqa: E402
from bench.records import FINISHED, RecordStore  # noqa: E402
from bench.sweep_settings import SweepSettings  # noqa: E402
from optimizers.analytic import update_cost  # noqa: E402

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
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
        "config_id": planned.config_id,
        "code_version": planned.code_version,
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


def _check_factory(cfg: DictConfig) -> None:
    """Raise if ``cfg._target_`` is missing or does not accept ``cfg``'s arguments."""
    target = hydra.utils.get_method(str(cfg._target_))
    arguments = {k: v for k, v in cfg.items() if not (k.startswith("_") and k.endswith("_"))}
    try:
        inspect.signature(target).bind(**arguments)
    except TypeError as exc:
        raise TypeError(f"{cfg._target_}: {exc}") from exc


class Sweep:
    """Builds tasks and optimizers for planned runs, caching each task across runs."""

    def __init__(self) -> None:
        self._tasks: dict[str, Any] = {}

    def task(self, cfg: DictConfig):
        key = json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True)
        if key not in self._tasks:
            self._tasks[key] = hydra.utils.instantiate(cfg, _convert_="all")
        return self._tasks[key]

    def check(self, runs: list[PlannedRun], build: set[str] | None = None) -> None:
        """Build every run's optimizer and settings and the tasks of the runs in ``build``
        (default: all); fail on the first bad one. The other runs' tasks are checked without
        loading data: their factory exists and accepts the config's arguments (runs already
        recorded need no data, and loading it would dominate a rerun with nothing to do)."""
        from optimizers import build_optimizer

        for planned in runs:
            where = f"run {planned.optimizer}/{planned.task}/seed={planned.seed}"
            try:
                build_optimizer(planned.config.optimizer)
                run_settings(planned)
                if build is None or planned.run_id in build:
                    self.task(planned.config.task)
                else:
                    _check_factory(planned.config.task)
            except SweepConfigError:
                raise
            except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
                raise SweepConfigError(f"{where}: {exc}") from exc
            except Exception as exc:  # Hydra's InstantiationException and the like
                raise SweepConfigError(f"{where}: {type(exc).__name__}: {exc}") from exc

    def execute(self, work: list[PlannedRun], sweep_name: str,
                context: dict[str, Any] | None = None) -> list[tuple[dict[str, Any], Any]]:
        """Run one work item (a run, or seeds to train together) in this process; any failure
        becomes rows with status error or oom. ``context`` holds columns about where it ran
        (isolated, timing_exclusive, concurrent_jobs, process_start_s, compile_cache)."""
        from bench.hardware import host_facts
        from optimizers import build_optimizer

        rows = [{**config_columns(p, sweep_name), **host_facts(), **(context or {})}
                for p in work]
        started = time.perf_counter()
        began = datetime.datetime.now(datetime.timezone.utc).isoformat()
        results: list[Any] = [None] * len(work)
        try:
            planned = work[0]
            settings = run_settings(planned)
            task, tx = self.task(planned.config.task), build_optimizer(planned.config.optimizer)
            if planned.vmapped:
                from bench.vmapped import run_seeds

                results = run_seeds(task, tx, settings, [p.seed for p in work],
                                    (context or {}).get("seed_batching", "auto"))
            else:
                from bench.runner import run

                results = [run(task, tx, settings, seed=planned.seed)]
        except Exception as exc:  # one failed run never stops a sweep
            message = f"{type(exc).__name__}: {exc}"
            oom = any(marker in message for marker in _OOM_MARKERS)
            for row in rows:
                row.update(status="oom" if oom else "error", error=message[:2000],
                           traceback="".join(traceback.format_exc())[-4000:])
        finished = datetime.datetime.now(datetime.timezone.utc).isoformat()
        out = []
        for row, result in zip(rows, results):
            if result is not None:
                row.update(result.summary, status=result.status, error=None)
                if not planned.vmapped and row.get("train_time_s"):
                    row["throughput_steps_per_s"] = row["steps_completed"] / row["train_time_s"]
            row.update(started_at=began, finished_at=finished,
                       run_s=time.perf_counter() - started,
                       vmapped_seeds=len(work) if work[0].vmapped else 1)
            out.append((row, None if result is None else result.curves))
        return out


def run_isolated(work: list[PlannedRun], sweep_name: str, store: RecordStore,
                 context: dict[str, Any], env: dict[str, str]) -> list[dict[str, Any]]:
    """Run a work item in a fresh worker process and return the rows it recorded.

    A worker that dies without recording (killed, out of host memory, a crash in native code)
    is recorded here with status oom (killed by SIGKILL, the kernel's OOM killer's signal) or
    error, and the tail of its output.
    """
    from bench import prestart
    from bench.hardware import host_facts
    from bench.worker import payload

    started = datetime.datetime.now(datetime.timezone.utc).isoformat()
    clock = time.perf_counter()
    proc = prestart.take(env)
    stdout, stderr = proc.communicate(payload(work, sweep_name, store.folder, context))
    rows = [store.read_row(p.run_id) for p in work]
    if proc.returncode == 0 and all(r is not None and r.get("started_at", "") >= started
                                    for r in rows):
        return rows
    killed = proc.returncode == -signal.SIGKILL
    tail = (stderr or stdout or "")[-2000:]
    out = []
    for planned in work:
        row = {**config_columns(planned, sweep_name), **host_facts(), **context,
               "started_at": started,
               "status": "oom" if killed or any(m in tail for m in _OOM_MARKERS) else "error",
               "error": f"worker exited with code {proc.returncode}: {tail}",
               "run_s": time.perf_counter() - clock,
               "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        store.write(row, None)
        out.append(row)
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
        step = row.get("step_time_median_s")
        timing = (f"step {step * 1e6:.1f} us ({row['step_over_sgd_step']:.2f}x SGD's)"
                  if step is not None else
                  f"throughput only: {row.get('throughput_steps_per_s') or 0:.0f} steps/s")
        return (f"ok: {'timing only' if loss is None else f'eval loss {loss:.4f}'}, {timing}, "
                f"state {row['opt_state_floats_per_param']:.2f} floats/param")
    if row["status"] == "diverged":
        return f"diverged after {row.get('steps_completed')} steps"
    return f"{row['status']}: {row['error'][:200]}"


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task and optimizer: status counts, loss over seeds, step/update times, state size."""
    needed = ("final_eval_loss", "step_time_median_s", "step_over_sgd_step",
              "update_time_median_s", "opt_state_floats_per_param")
    runs = runs.assign(**{c: float("nan") for c in needed if c not in runs})
    grouped = runs.groupby(["task", "optimizer"], sort=True)
    with warnings.catch_warnings():  # medians of throughput-only runs' empty timing columns
        warnings.simplefilter("ignore", RuntimeWarning)
        table = _summary_columns(runs, grouped)
    return table.sort_values(["eval_loss"]).round(4)


def _summary_columns(runs: pd.DataFrame, grouped) -> pd.DataFrame:
    return pd.DataFrame({
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
        **({"steps/s": grouped.throughput_steps_per_s.median()}
           if "throughput_steps_per_s" in runs else {}),
    })


class Decision:
    """Which planned runs to run, and why the others are skipped (printed for the user)."""

    def __init__(self, runs: list[PlannedRun], store: RecordStore,
                 settings: SweepSettings) -> None:
        skip = () if settings.force else FINISHED if settings.retry_failed else (
            *FINISHED, "error", "oom")
        recorded = store.run_ids()
        self.todo: list[PlannedRun] = []
        self.skipped: dict[str, int] = {}
        self.reasons: dict[str, int] = {}
        stale = sorted(recorded - {r.run_id for r in runs})
        stale_configs = {rid: (row or {}).get("config_id") for rid, row in
                         zip(stale, map(store.read_row, stale))}
        planned_configs = {r.config_id for r in runs}
        # Records of planned configs under other code: replaced by this sweep's runs.
        self.superseded = [rid for rid in stale if stale_configs[rid] in planned_configs]
        self.stale = [rid for rid in stale if rid not in self.superseded]
        other_code = set(stale_configs.values())
        for planned in runs:
            row = store.read_row(planned.run_id) if planned.run_id in recorded else None
            status = None if row is None else row.get("status")
            if status in skip:
                kind = "finished" if status in FINISHED else "failed"
                self.skipped[kind] = self.skipped.get(kind, 0) + 1
                continue
            self.todo.append(planned)
            reason = ("forced (sweep.force=true)" if settings.force and status in FINISHED else
                      "failed before, retried" if status in ("error", "oom") else
                      f"unreadable record {store.row_path(planned.run_id)}"
                      if planned.run_id in recorded else
                      "recorded under another code version" if planned.config_id in other_code
                      else "new")
            self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def describe(self, name: str, planned: int, folder: Path) -> str:
        skipped = sum(self.skipped.values())
        why = []
        if self.skipped.get("finished"):
            why.append(f"{self.skipped['finished']} finished (ok or diverged; sweep.force=true "
                       "reruns them)")
        if self.skipped.get("failed"):
            why.append(f"{self.skipped['failed']} failed (error or oom; "
                       "sweep.retry_failed=true retries them)")
        todo = ", ".join(f"{n} {r}" for r, n in self.reasons.items())
        return (f"sweep '{name}': {planned} runs planned, {skipped} already recorded and "
                f"skipped{' (' + '; '.join(why) + ')' if why else ''}, {len(self.todo)} to run"
                f"{' (' + todo + ')' if todo else ''}; results in {folder}/")


def _tables_current(store: RecordStore, figures: bool) -> bool:
    """Whether runs.parquet (and the figures) are newer than every record."""
    runs = store.folder / "runs.parquet"
    if not runs.exists() or (figures and not (store.folder / "figures").is_dir()):
        return False
    newest = max((p.stat().st_mtime for p in store.records.glob("*.json")), default=0.0)
    return runs.stat().st_mtime >= newest


def _report(store: RecordStore, planned_ids: set[str] | None, figures: bool,
            rewrite: bool) -> None:
    """Merge the records into the tables (unless current), summarise, draw the figures."""
    if rewrite:
        table, curves = store.collect()
        runs_path, curves_path = store.write_tables(table, curves)
    else:
        runs_path, curves_path = store.folder / "runs.parquet", store.folder / "curves.parquet"
        table = pd.read_parquet(runs_path)
        curves = None
        print("\ntables and figures are up to date with the records (nothing new)")
    this_sweep = table if planned_ids is None else table[table.run_id.isin(planned_ids)]
    print("\nResults (this sweep's runs):")
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(summary_table(this_sweep).to_string())
    print(f"\nstatus: {this_sweep.status.value_counts().to_dict()}")
    print(f"runs:    {runs_path}  ({len(table)} rows)")
    if curves is not None:
        print(f"curves:  {curves_path}  ({len(curves)} rows)")
    if figures and rewrite:
        from bench.plots import draw_sweep_figures

        paths = draw_sweep_figures(table, curves, store.folder / "figures")
        print(f"figures: {', '.join(str(p) for p in paths if p.suffix == '.png')} (+ PDF)")


def _is_exclusive(work: list[PlannedRun]) -> bool:
    """A timing-grade item: it times its steps, so it must have the machine to itself."""
    return not work[0].vmapped and bool(work[0].config.run.get("timing", True))


def run_sweep(cfg: DictConfig, cli_overrides: list[str]) -> int:
    """Plan, check, execute and collect one sweep (or one shard of it); returns the exit code."""
    settings = SweepSettings.from_config(OmegaConf.to_container(cfg.sweep, resolve=True))
    name = settings.name
    folder = Path(cfg.results_dir) / name
    store = RecordStore(folder)
    if settings.collect_only:
        _check_writable(folder)
        print(f"sweep '{name}': collecting the records under {store.records}/")
        _report(store, None, settings.figures, rewrite=True)
        return 0

    def hydra_compose(overrides: list[str]) -> DictConfig:
        return hydra.compose(config_name="config", overrides=overrides)

    compose = CachedCompose(hydra_compose, config_groups(CONF_DIR))
    try:
        version = code_version(settings.code_version)
    except ValueError as exc:
        raise SweepConfigError(str(exc)) from exc
    runs = plan_runs(OmegaConf.to_container(cfg.sweep, resolve=True), cli_overrides, compose,
                     version, settings.vmap_seeds)
    if settings.vmap_seeds and any(r.config.run.steps < 1 for r in runs):
        raise SweepConfigError("sweep.vmap_seeds=true needs run.steps >= 1 (timing-only runs "
                               "are measured one by one)")
    items = seed_groups(runs) if settings.vmap_seeds else [[r] for r in runs]
    mine = shard(items, settings.shard, settings.num_shards)
    mine_runs = [p for work in mine for p in work]
    decision = Decision(mine_runs, store, settings)
    sweep = Sweep()
    # Every run, not only this shard's or those to run: a bad config stops every shard.
    sweep.check(runs, build={p.run_id for p in decision.todo})
    _check_writable(folder)
    isolate = should_isolate(settings.isolate, settings.jobs)
    if settings.jobs > 1 and not isolate:
        raise SweepConfigError(f"sweep.jobs={settings.jobs} runs workers in parallel, which "
                               "needs sweep.isolate=true (or auto)")
    planned_ids = {r.run_id for r in runs}
    if settings.num_shards > 1:
        print(f"shard {settings.shard} of {settings.num_shards}: {len(mine_runs)} of the "
              f"{len(runs)} planned runs")
    for rid in decision.superseded:
        store.set_aside(rid)
    if decision.superseded:
        print(f"set aside {len(decision.superseded)} records of these runs made by other code "
              f"(moved to {store.records / 'superseded'}): this code's runs replace them")
    stale = decision.stale if settings.num_shards == 1 else []
    if stale and settings.prune:
        for rid in stale:
            store.set_aside(rid)
        print(f"set aside {len(stale)} records of runs this sweep no longer plans "
              f"(moved to {store.records / 'superseded'})")
    elif stale:
        print(f"note: {folder} holds {len(stale)} records of runs this sweep does not plan "
              "(other settings, other code or a narrowed sweep); they stay in the tables. "
              "sweep.prune=true sets them aside.")
    print(decision.describe(name, len(mine_runs), folder), flush=True)

    todo_ids = {p.run_id for p in decision.todo}
    todo = [kept for work in mine if (kept := [p for p in work if p.run_id in todo_ids])]
    if todo:
        _execute(todo, sweep, store, settings, isolate, name, cfg)

    if settings.num_shards > 1 and not planned_ids <= store.run_ids():
        print(f"\nshard {settings.shard} done; other shards' runs are still missing. The "
              "last shard to finish writes the tables, or run again with "
              "sweep.collect_only=true.")
        return 0
    rewrite = bool(todo) or decision.superseded or stale and settings.prune or not _tables_current(
        store, settings.figures)
    _report(store, planned_ids, settings.figures, rewrite=bool(rewrite))
    return 0


def _execute(todo: list[list[PlannedRun]], sweep: Sweep, store: RecordStore,
             settings: SweepSettings, isolate: bool, name: str, cfg: DictConfig) -> None:
    """Run the work items, in this process or in workers (``sweep.jobs`` at a time)."""
    from bench.progress import Progress

    cache = settings.compile_cache
    if cache is not None and not Path(cache).is_absolute():
        cache = str(Path.cwd() / cache)
    runs = sum(len(work) for work in todo)
    gpus = visible_gpus() if isolate else []
    print("each run in a fresh process (sweep.isolate=false shares one: faster, but memory "
          "peaks are then not per run)" if isolate else
          "runs share this process: memory peaks are not per run (sweep.isolate=true)")
    if settings.jobs > 1:
        print(f"up to {settings.jobs} workers at once"
              f"{f', one per GPU ({len(gpus)} GPUs)' if gpus else ''}; timing-grade runs "
              f"{'have a GPU each' if gpus else 'run alone'}")
    progress = Progress(runs)

    def label(work: list[PlannedRun]) -> str:
        p = work[0]
        seeds = ",".join(str(w.seed) for w in work)
        return (f"{p.optimizer} on {p.task}, seed{'s' if len(work) > 1 else ''} {seeds}"
                f"{' (vmapped)' if p.vmapped else ''}")

    def context(placement: Placement) -> dict[str, Any]:
        return {"isolated": isolate, "timing_exclusive": placement.timing_exclusive,
                "concurrent_jobs": placement.concurrent_jobs, "gpu": placement.gpu,
                "compile_cache": cache is not None,
                **({"seed_batching": settings.seed_batching} if settings.vmap_seeds else {})}

    if not isolate:
        if cache is not None:
            from bench.compile_cache import enable

            enable(cache)
        for work in todo:
            progress.start(label(work))
            ctx = {**context(Placement(True, 1)), "process_start_s": 0.0}
            for row, curves in sweep.execute(work, name, ctx):
                store.write(row, curves)
                progress.finish(_outcome(row), label(work) if len(work) > 1 else None)
        return

    def launch(work: list[PlannedRun], placement: Placement) -> list[dict[str, Any]]:
        return run_isolated(work, name, store, {**context(placement), "cache_dir": cache},
                            placement.env())

    if settings.jobs == 1:
        for work in todo:
            progress.start(label(work))
            for row in launch(work, Placement(True, 1, gpus[0] if gpus else None)):
                progress.finish(_outcome(row), label(work) if len(work) > 1 else None)
        return
    for work, _, rows in run_pool(todo, settings.jobs, _is_exclusive, launch, gpus):
        for row in rows:
            progress.finish(_outcome(row), f"{label(work)}, seed {row['seed']}")


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


def _results_dir_writable(argv: list[str]) -> bool:
    """Check the ``results_dir=`` of the command line (default ``results``) before Hydra starts:
    Hydra creates its log folder inside it and would fail with a bare traceback."""
    given = [a.split("=", 1)[1] for a in argv if a.lstrip("+").startswith("results_dir=")]
    try:
        _check_writable(Path(given[-1] if given else "results"))
    except SweepConfigError as exc:
        print(f"error: {exc}\nNothing was run; no result was changed.", file=sys.stderr)
        return False
    return True


if __name__ == "__main__":
    if not _results_dir_writable(sys.argv[1:]):
        sys.exit(2)
    main()
