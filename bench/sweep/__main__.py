"""The sweep entry point: ``python -m bench.sweep sweep=<preset> [overrides]``.

Composes and plans every run of the preset and checks all of them (configs, hyperparameters,
data, the results folder) before any work; runs the runs not yet recorded (one by one,
``sweep.jobs`` at a time, or this shard's part under a cluster launcher), writing each run's
record as it finishes; then merges the records into ``results/<name>/runs.parquet`` and
``curves.parquet``, prints a summary and draws the figures.
"""

from __future__ import annotations

import os

# Device memory figures mean something only without JAX's up-front 75% reservation.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

if __name__ == "__main__":  # the first worker starts while this process imports and plans
    import sys

    from bench.sweep.prestart import start_for_sweep

    start_for_sweep(sys.argv[1:])

import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from bench.records.store import RecordStore  # noqa: E402
from bench.sweep.checks import (  # noqa: E402
    TaskCache,
    check_runs,
    check_writable,
    with_data_fingerprints,
)
from bench.sweep.code_version import code_version  # noqa: E402
from bench.sweep.compose import CachedCompose, config_groups, searchpath_dirs  # noqa: E402
from bench.sweep.execute import execute, should_isolate, stop_workers  # noqa: E402
from bench.sweep.lock import FolderBusyError, FolderLock  # noqa: E402
from bench.sweep.plan import plan_runs, seed_groups, shard  # noqa: E402
from bench.sweep.report import report, verdict  # noqa: E402
from bench.sweep.resume import Decision, set_aside_replaced, tables_current  # noqa: E402
from bench.sweep.settings import SweepConfigError, SweepSettings  # noqa: E402
from bench.train.spec import RunSpec  # noqa: E402

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def _composer(cli_overrides: list[str]) -> CachedCompose:
    """Hydra's compose over conf/ and the folders of ``hydra.searchpath``."""
    searchpath = list(HydraConfig.get().searchpath) if HydraConfig.initialized() else []

    def hydra_compose(overrides: list[str]) -> DictConfig:
        return hydra.compose(config_name="config", overrides=overrides)

    return CachedCompose(hydra_compose, config_groups([CONF_DIR, *searchpath_dirs(searchpath)]),
                         cli_overrides, searchpath)


def run_sweep(cfg: DictConfig, cli_overrides: list[str]) -> int:
    """Plan, check, execute and collect one sweep (or one shard of it); returns the exit code."""
    settings = SweepSettings.from_config(OmegaConf.to_container(cfg.sweep, resolve=True))
    folder = Path(cfg.results_dir) / settings.name
    store = RecordStore(folder)
    if settings.collect_only:
        check_writable(folder)
        with FolderLock(folder, collect_only=True):
            print(f"sweep '{settings.name}': collecting the records under {store.records}/")
            report(store, None, settings.figures, rewrite=True)
        return 0
    try:
        version = code_version(settings.code_version)
    except ValueError as exc:
        raise SweepConfigError(str(exc)) from exc
    tasks = TaskCache()
    runs = plan_runs(OmegaConf.to_container(cfg.sweep, resolve=True), cli_overrides,
                     _composer(cli_overrides), version, settings.vmap_seeds)
    runs = with_data_fingerprints(runs, tasks)
    if settings.vmap_seeds and any(r.config.run.steps < 1 for r in runs):
        raise SweepConfigError("sweep.vmap_seeds=true needs run.steps >= 1 (timing-only runs "
                               "are measured one by one)")
    items = seed_groups(runs) if settings.vmap_seeds else [[r] for r in runs]
    mine = shard(items, settings.shard, settings.num_shards)
    # Every run, not only this shard's or those to run: a bad config stops every shard.
    check_runs(runs)
    for where in (folder, store.records, *([folder / "figures"] if settings.figures else [])):
        check_writable(where)
    isolate = should_isolate(settings.isolate, settings.jobs)
    if settings.jobs > 1 and not isolate:
        raise SweepConfigError(f"sweep.jobs={settings.jobs} runs workers in parallel, which "
                               "needs sweep.isolate=true (or auto)")
    with FolderLock(folder, settings.shard, settings.num_shards):
        return _run_planned(runs, mine, store, settings, isolate, tasks)


def _run_planned(runs: list[RunSpec], mine: list[list[RunSpec]], store: RecordStore,
                 settings: SweepSettings, isolate: bool, tasks: TaskCache) -> int:
    """Under the folder's lock: decide what to run, run it, report; returns the exit code."""
    folder = store.folder
    mine_runs = [s for work in mine for s in work]
    invalid = store.set_aside_invalid()
    for problem in invalid.values():
        print(f"set aside an invalid record (moved to {store.records / 'invalid'}; its run is "
              f"redone): {problem}")
    decision = Decision(mine_runs, store, settings, set(invalid))
    planned_ids = {r.run_id for r in runs}
    if settings.num_shards > 1:
        print(f"shard {settings.shard} of {settings.num_shards}: {len(mine_runs)} of the "
              f"{len(runs)} planned runs")
    stale = set_aside_replaced(decision, store, settings, folder)
    print(decision.describe(settings.name, len(mine_runs), folder), flush=True)

    todo_ids = {s.run_id for s in decision.todo}
    todo = [kept for work in mine if (kept := [s for s in work if s.run_id in todo_ids])]
    if todo:
        execute(todo, store, settings, isolate, tasks)
    if settings.num_shards > 1 and not planned_ids <= store.run_ids():
        print(f"\nshard {settings.shard} done; other shards' runs are still missing. The "
              "last shard to finish writes the tables, or run again with "
              "sweep.collect_only=true.")
        return 0
    rewrite = bool(todo or decision.superseded or stale or invalid) or not tables_current(
        store, settings.figures)
    statuses = report(store, planned_ids, settings.figures, rewrite=rewrite)
    return verdict(statuses)


def _fail(message: str) -> int:
    print(f"error: {message}\nNothing was run; no result was changed.", file=sys.stderr)
    return 2


class Interrupted(BaseException):
    """The sweep was told to stop (SIGINT or SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_signal(signum: int, frame: object) -> None:
    stop_workers()
    raise Interrupted(signum)


@hydra.main(config_path="../../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    overrides = list(HydraConfig.get().overrides.task)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)
    try:
        code = run_sweep(cfg, overrides)
    except FolderBusyError as exc:
        print(f"error: {exc}\nNothing was run; no result was changed.", file=sys.stderr)
        code = 3
    except (SweepConfigError, hydra.errors.HydraException) as exc:
        code = _fail(str(exc))
    except Interrupted as stop:
        print(f"\nsweep stopped by {stop}: its workers were ended; every run finished before is "
              "recorded, and running the same command again resumes", file=sys.stderr)
        code = 128 + stop.signum
    except OSError as exc:  # a full disk, a folder that is a file: name the path and errno
        print(f"error: could not write {exc.filename or 'the results'}: [Errno {exc.errno}] "
              f"{exc.strerror}. The records already written are intact; fix this and run the "
              "same command again to resume.", file=sys.stderr)
        code = 1
    if code:
        sys.exit(code)


def _results_dir_writable(argv: list[str]) -> bool:
    """Check the ``results_dir=`` of the command line (default ``results``) before Hydra starts:
    Hydra creates its log folder inside it and would fail with a bare traceback."""
    given = [a.split("=", 1)[1] for a in argv if a.lstrip("+").startswith("results_dir=")]
    try:
        check_writable(Path(given[-1] if given else "results"))
    except SweepConfigError as exc:
        _fail(str(exc))
        return False
    return True


if __name__ == "__main__":
    if not _results_dir_writable(sys.argv[1:]):
        sys.exit(2)
    main()
