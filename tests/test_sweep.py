"""The sweep end to end (as a subprocess), its planning, and failure handling in-process."""

from __future__ import annotations

import json
import math
from pathlib import Path

import hydra
import pandas as pd
import pytest
from omegaconf import OmegaConf

from bench.records.files import read_parquet
from bench.records.schema import RUN_COLUMNS
from bench.records.store import RecordStore
from bench.sweep.checks import TaskCache
from bench.sweep.compose import CachedCompose, config_groups
from bench.sweep.plan import plan_runs
from bench.sweep.worker import run_in_process
from bench.train.record import Where
from bench.train.settings import RunSettings
from bench.train.spec import RunSpec
from optimizers import check_hyperparameters
from tests.conftest import CONF_DIR, TINY_SETTINGS, launch_sweep
from tests.helpers import FAILURE_MESSAGE

SMOKE_STEPS = 60
SWEEPS = sorted((CONF_DIR / "sweep").glob("*.yaml"))


def _output(proc) -> str:
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke sweep run once into a fresh results folder: (process, sweep folder)."""
    results = tmp_path_factory.mktemp("results")
    proc = launch_sweep("sweep=smoke", f"results_dir={results}")
    return proc, results / "smoke"


def test_smoke_sweep_exits_zero(smoke):
    """The smoke sweep succeeds."""
    proc, _ = smoke
    assert proc.returncode == 0, _output(proc)[-3000:]


def test_smoke_sweep_runs_table(smoke):
    """runs.parquet has one ok row per planned run and every standard column."""
    _, folder = smoke
    runs = read_parquet(folder / "runs.parquet")
    assert set(RUN_COLUMNS) <= set(runs.columns)
    assert sorted(runs.optimizer) == ["adam", "sgd"]
    assert runs.run_id.is_unique
    assert (runs.status == "ok").all(), runs[["optimizer", "status", "error"]]
    assert (runs.task == "synthetic").all()
    assert (runs.steps == SMOKE_STEPS).all()
    assert (runs.final_eval_loss > 0).all()
    assert (runs.step_time_median_s > 0).all()


def test_smoke_sweep_curves_table(smoke):
    """curves.parquet holds a train loss for every step of every run."""
    _, folder = smoke
    runs = read_parquet(folder / "runs.parquet")
    curves = read_parquet(folder / "curves.parquet")
    assert set(curves.run_id) == set(runs.run_id)
    for rid in runs.run_id:
        train = curves[(curves.run_id == rid) & (curves.split == "train")]
        assert sorted(train.step) == list(range(SMOKE_STEPS)), rid
        assert train.loss.notna().all()


def test_smoke_sweep_figures(smoke):
    """The Pareto and loss-curve figures are drawn."""
    _, folder = smoke
    for name in ("pareto.png", "loss_curves.png"):
        path = folder / "figures" / name
        assert path.is_file(), path
        assert path.read_bytes().startswith(b"\x89PNG")


def test_smoke_sweep_rerun_skips_recorded_runs(smoke):
    """Running the same sweep again skips both recorded runs and keeps the same rows."""
    _, folder = smoke
    before = read_parquet(folder / "runs.parquet")
    proc = launch_sweep("sweep=smoke", f"results_dir={folder.parent}")
    assert proc.returncode == 0, _output(proc)[-3000:]
    assert "2 already recorded and skipped" in proc.stdout
    after = read_parquet(folder / "runs.parquet")
    key = ["run_id", "status", "finished_at", "final_eval_loss"]
    pd.testing.assert_frame_equal(
        before[key].sort_values("run_id").reset_index(drop=True),
        after[key].sort_values("run_id").reset_index(drop=True),
    )


def test_corrupt_record_is_named_and_rerun(smoke):
    """A damaged record of a planned run is reported by name, set aside (not deleted) and its
    run redone; the other run's record is not touched."""
    _, folder = smoke
    records = sorted((folder / "records").glob("*.json"))
    damaged, kept = records[0], records[1]
    kept_text = kept.read_text()
    damaged.write_text('{"run_id": "trunc')
    proc = launch_sweep("sweep=smoke", f"results_dir={folder.parent}", "sweep.figures=false")
    assert proc.returncode == 0, _output(proc)[-3000:]
    assert "set aside an invalid record" in proc.stdout and str(damaged) in proc.stdout
    assert (damaged.parent / "invalid" / damaged.name).read_text() == '{"run_id": "trunc'
    assert "1 already recorded and skipped" in proc.stdout
    assert kept.read_text() == kept_text
    runs = read_parquet(folder / "runs.parquet")
    assert len(runs) == 2 and (runs.status == "ok").all()


def test_unknown_optimizer_fails_fast(tmp_path):
    """An unknown optimizer choice exits non-zero within 60 s, naming the bad choice."""
    proc = launch_sweep("sweep=smoke", f"results_dir={tmp_path}", "optimizer=does_not_exist",
                        timeout=60)
    assert proc.returncode != 0
    assert "does_not_exist" in _output(proc)
    assert not (tmp_path / "smoke" / "records").exists()


def test_negative_learning_rate_fails_before_work(tmp_path):
    """A negative learning rate stops the sweep, names key and value, writes no records."""
    proc = launch_sweep("sweep=smoke", f"results_dir={tmp_path}", "optimizer.learning_rate=-0.1",
                        timeout=60)
    output = _output(proc)
    assert proc.returncode != 0
    assert "learning_rate" in output
    assert "-0.1" in output
    assert not (tmp_path / "smoke" / "records").exists()


def test_missing_dataset_says_how_to_install(tmp_path):
    """A Fashion-MNIST task with a missing data folder fails and says how to install it."""
    proc = launch_sweep("sweep=smoke", f"results_dir={tmp_path}", "task=fmnist_mlp8",
                        "task.data_dir=/nonexistent", timeout=60)
    assert proc.returncode != 0
    assert "dataset-fashion-mnist" in _output(proc)
    assert not (tmp_path / "smoke" / "records").exists()


def _arm_count(entries) -> int:
    """Number of settings an axis of a sweep stands for (a list of names, or a mapping of names
    to one setting or a grid of them)."""
    if isinstance(entries, dict):
        return sum(len(v) if isinstance(v, list) else 1 for v in entries.values())
    return len(entries)


def _arm_settings(entries, planned: RunSpec, group: str) -> dict:
    """The preset's settings of the arm ``planned`` runs (its optimizer's or task's)."""
    name = planned.optimizer_name if group == "optimizer" else planned.task.split("(")[0]
    if group == "optimizer" and planned.tuned_from:
        return dict(planned.arm)  # sweep.tuned: the rate its table gives this task
    if not isinstance(entries, dict) or entries.get(name) is None:
        return {}
    grid = entries[name] if isinstance(entries[name], list) else [entries[name]]
    if len(grid) == 1:
        return dict(grid[0])
    label = planned.optimizer if group == "optimizer" else planned.task
    return next(dict(g) for g in grid if label.endswith(
        "(" + ",".join(f"{k}={json.dumps(v)}" for k, v in g.items()) + ")"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_preset_plans(path):
    """Every preset composes and plans distinct, valid runs with the preset's run settings."""
    name = path.stem
    base = [f"sweep={name}", f"sweep.name={name}"]
    with hydra.initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra.compose(config_name="config", overrides=base)
        sweep = OmegaConf.to_container(cfg.sweep, resolve=True)
        # Planning composes each group choice once (CachedCompose); sample runs are checked
        # against a full compose below.
        compose = CachedCompose(
            lambda o: hydra.compose(config_name="config", overrides=[*base, *o]),
            config_groups([CONF_DIR]), [])
        runs = plan_runs(sweep, [], compose)
        assert len(runs) >= 1
        ids = [r.run_id for r in runs]
        assert len(set(ids)) == len(ids)
        tuned = len(sweep.get("tuned") or {})  # one tuned arm per task and tuned optimizer
        expected = (_arm_count(sweep["tasks"]) * (_arm_count(sweep["optimizers"]) + tuned)
                    * len(sweep["seeds"]))
        assert len(runs) == expected
        run_section = OmegaConf.to_container(cfg.run, resolve=True)
        for planned in runs:
            assert OmegaConf.to_container(planned.config.run, resolve=True) == run_section
            assert planned.config.seed == planned.seed
            check_hyperparameters(planned.config.optimizer)
            RunSettings(**run_section)
        for planned in (runs[0], runs[-1]):
            # The same run composed by Hydra alone, the preset's settings as override strings.
            settings = [f"{group}.{key}={json.dumps(value)}"
                        for group, axis in (("optimizer", "optimizers"), ("task", "tasks"))
                        for key, value in _arm_settings(sweep[axis], planned, group).items()]
            full = hydra.compose(config_name="config", overrides=[
                *base, *planned.overrides, *settings, f"seed={planned.seed}"])
            again = RunSpec(planned.optimizer, planned.task, planned.seed, planned.overrides,
                            full)
            assert again.run_id == planned.run_id
            assert OmegaConf.to_container(full, resolve=False) == OmegaConf.to_container(
                planned.config, resolve=False)


def test_failing_update_is_recorded_as_error(tmp_path):
    """An optimizer whose update raises gives a row with status error and the message."""
    config = OmegaConf.create({
        "optimizer": {"_target_": "tests.helpers.failing_optimizer"},
        "task": OmegaConf.load(CONF_DIR / "task" / "synthetic.yaml"),
        "run": dict(TINY_SETTINGS),
        "seed": 0,
    })
    planned = RunSpec("failing", "synthetic", 0, (), config)
    [(row, curves)] = run_in_process([planned], "unit", Where(), "auto", TaskCache())
    assert row["status"] == "error"
    assert FAILURE_MESSAGE in row["error"]
    assert "RuntimeError" in row["error"]
    assert curves is None
    assert row["run_id"] == planned.run_id
    store = RecordStore(Path(tmp_path))
    store.write(row, curves)
    runs, _ = store.collect()
    assert runs.status.tolist() == ["error"]
    assert math.isnan(runs.final_eval_loss.astype(float).iloc[0])
