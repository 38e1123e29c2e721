"""Scaling a sweep out: run identity with the code version, skip reasons, the parallel pool,
shards, and seeds trained together (vmapped)."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from bench.records.store import RecordStore
from bench.sweep.code_version import RESULT_FOLDERS, source_hash
from bench.sweep.plan import seed_groups, shard
from bench.sweep.pool import Placement, run_pool
from bench.sweep.resume import Decision
from bench.sweep.settings import SweepSettings
from bench.train.loop import resolve_batching
from bench.train.run import run
from bench.train.settings import RunSettings
from bench.train.spec import RunSpec
from optimizers import build_optimizer
from tests.conftest import ADAM, CONF_DIR, REPO_ROOT, TINY_SETTINGS
from tests.helpers import record_row


def _planned(seed: int = 0, code: str | None = "src-a", lr: float = 0.01,
             vmapped: bool = False) -> RunSpec:
    config = OmegaConf.create({
        "optimizer": {**ADAM, "learning_rate": lr},
        "task": OmegaConf.load(CONF_DIR / "task" / "synthetic.yaml"),
        "run": dict(TINY_SETTINGS), "seed": seed,
    })
    return RunSpec("adam", "synthetic", seed, (), config, optimizer_name="adam",
                   optimizer_config="adam", code_version=code, vmapped=vmapped)


def test_code_version_changes_the_run_id_but_not_the_config_id():
    """The same config under other code is another run, recognisably the same config."""
    a, b, none = _planned(code="src-a"), _planned(code="src-b"), _planned(code=None)
    assert a.run_id != b.run_id
    assert a.config_id == b.config_id == none.config_id
    assert none.run_id == none.config_id  # no code version: the id of the config alone


def test_source_hash_follows_result_folders_only(tmp_path):
    """Editing a file of a result folder, or adding one, changes the hash; editing docs, tests
    or the sweep's plumbing does not."""
    for entry in RESULT_FOLDERS:
        shutil.copytree(REPO_ROOT / entry, tmp_path / entry,
                        ignore=shutil.ignore_patterns("__pycache__"))
    before = source_hash(tmp_path)
    assert before == source_hash(REPO_ROOT)
    (tmp_path / "README.md").write_text("docs changed")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("x = 1\n")
    (tmp_path / "bench" / "sweep").mkdir()
    (tmp_path / "bench" / "sweep" / "report.py").write_text("x = 1\n")
    assert source_hash(tmp_path) == before
    loop = tmp_path / "bench" / "train" / "loop.py"
    loop.write_text(loop.read_text() + "\n# changed\n")
    edited = source_hash(tmp_path)
    assert edited != before
    (tmp_path / "bench" / "measure" / "new_measurement.py").write_text("x = 1\n")
    assert source_hash(tmp_path) != edited


def _settings(**overrides) -> SweepSettings:
    return SweepSettings(name="unit", **overrides)


def test_decision_says_why_runs_are_skipped_or_rerun(tmp_path):
    """Finished runs are skipped, failed ones kept unless retried, runs of other code and
    unreadable records rerun, and each reason is counted."""
    store = RecordStore(tmp_path)
    old = [_planned(seed=s, code="src-old") for s in range(4)]
    new = [_planned(seed=s, code="src-new") for s in range(4)]
    for planned, status in zip(new[:2], ("ok", "error")):
        store.write(record_row(planned.run_id, status, config_id=planned.config_id), None)
    store.write(record_row(old[2].run_id, config_id=old[2].config_id), None)
    store.row_path(new[3].run_id).write_text("{not json")  # a corrupt record

    store.write(record_row("other-config", config_id="elsewhere"), None)
    decision = Decision(new, store, _settings())
    assert decision.superseded == [old[2].run_id]  # replaced by this sweep's run
    assert decision.stale == ["other-config"]  # not planned: stays until sweep.prune
    assert decision.skipped == {"finished": 1, "failed": 1}
    assert [p.seed for p in decision.todo] == [2, 3]
    assert decision.reasons == {"recorded under another code version": 1,
                                f"unreadable record {store.row_path(new[3].run_id)}": 1}
    text = decision.describe("unit", 4, tmp_path)
    assert "2 already recorded and skipped" in text
    assert "sweep.retry_failed=true" in text
    assert "unreadable record" in text

    retried = Decision(new, store, _settings(retry_failed=True))
    assert retried.reasons["failed before, retried"] == 1
    forced = Decision(new, store, _settings(force=True))
    assert len(forced.todo) == 4 and forced.reasons["forced (sweep.force=true)"] == 1


@pytest.mark.parametrize(("overrides", "message"), [
    ({"jobs": 0}, "sweep.jobs=0: must be at least 1"),
    ({"jobs": "four"}, "sweep.jobs='four': expected an integer"),
    ({"shard": 2, "num_shards": 2}, "sweep.shard=2: must be below sweep.num_shards=2"),
    ({"vmap_seeds": "yes"}, "sweep.vmap_seeds='yes': expected true or false"),
    ({"seed_batching": "loop"}, "sweep.seed_batching='loop': expected one of auto"),
    ({"code_version": "latest"}, "sweep.code_version='latest'"),
    ({"isolate": "sometimes"}, "sweep.isolate='sometimes'"),
])
def test_bad_sweep_settings_name_the_setting(overrides, message):
    """Each bad sweep.* value raises an error naming the setting and the value."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _settings(**overrides)


def test_unknown_sweep_setting_is_named():
    """A misspelt sweep setting (one a preset could smuggle in) is an error naming it."""
    with pytest.raises(ValueError, match="sweep.jobz"):
        SweepSettings.from_config({"name": "unit", "jobz": 2, "seeds": [0]})


def test_shards_are_disjoint_and_cover_the_plan():
    """Shards of a plan share no item and together hold every item."""
    items = list(range(11))
    parts = [shard(items, i, 3) for i in range(3)]
    assert sorted(sum(parts, [])) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_seed_groups_join_runs_that_differ_only_in_seed():
    """Seeds of one config form a group; another learning rate is another group."""
    runs = [_planned(seed=s) for s in range(3)] + [_planned(seed=0, lr=0.1)]
    assert [[p.seed for p in g] for g in seed_groups(runs)] == [[0, 1, 2], [0]]


def _track(concurrency: list[int], active: list[str], lock: threading.Lock):
    def launch(item: str, placement: Placement) -> Placement:
        with lock:
            active.append(item)
            concurrency.append(len(active))
            if item.startswith("timed"):
                assert active == [item], f"{item} shared the machine with {active}"
        time.sleep(0.05)
        with lock:
            active.remove(item)
        return placement

    return launch


def test_pool_times_exclusive_runs_alone_and_others_in_parallel():
    """Timing-grade items never overlap another item; throughput-only items run side by
    side; placements say which."""
    concurrency, active, lock = [], [], threading.Lock()
    items = ["timed-0", "fast-0", "fast-1", "timed-1", "fast-2", "fast-3"]
    done = {item: placement for item, placement, _ in run_pool(
        items, 3, lambda it: it.startswith("timed"), _track(concurrency, active, lock))}
    assert set(done) == set(items)
    assert max(concurrency) >= 2  # throughput-only items did share
    for item, placement in done.items():
        timed = item.startswith("timed")
        assert placement.timing_exclusive is timed
        assert placement.concurrent_jobs == (1 if timed else 3)


def test_pool_gives_each_worker_its_own_gpu():
    """With GPUs every item gets one no running item holds, exported as CUDA_VISIBLE_DEVICES."""
    held, lock, clashes = set(), threading.Lock(), []

    def launch(item: int, placement: Placement) -> str:
        with lock:
            if placement.gpu in held:
                clashes.append(placement.gpu)
            held.add(placement.gpu)
        time.sleep(0.03)
        with lock:
            held.discard(placement.gpu)
        return placement.env()["CUDA_VISIBLE_DEVICES"]

    results = list(run_pool(range(6), 4, lambda _: True, launch, gpus=["0", "1"]))
    assert not clashes
    assert {env for _, _, env in results} == {"0", "1"}
    assert all(p.timing_exclusive and p.concurrent_jobs == 2 for _, p, _ in results)


@pytest.mark.parametrize("batching, data_on_device", [("unroll", True), ("vmap", False)])
def test_vmapped_seeds_match_sequential_runs(synthetic_task, tiny_run, batching, data_on_device):
    """Seeds trained as one program give each seed the losses a run of its own gives, with
    the seeds batched or unrolled, the batches gathered on the device or drawn on the host."""
    settings = RunSettings(**{**TINY_SETTINGS, "timing": False})
    task = synthetic_task if data_on_device else dataclasses.replace(synthetic_task,
                                                                     train_arrays=None)
    together = run(task, build_optimizer(ADAM), settings, [0, 1], batching)
    assert [r.status for r in together] == ["ok"] * 2
    assert {r.summary["seed_batching"] for r in together} == {batching}
    for seed, result in zip([0, 1], together):
        alone = tiny_run(ADAM, seed=seed)  # timed, which changes no loss
        for split in ("train", "eval"):
            mine = result.curves[result.curves.split == split].loss.to_numpy()
            theirs = alone.curves[alone.curves.split == split].loss.to_numpy()
            np.testing.assert_allclose(mine, theirs, rtol=1e-5, err_msg=f"seed {seed} {split}")
        assert result.summary["vmapped_seeds"] == 2
        assert result.summary["step_time_median_s"] is None  # throughput only
        assert result.summary["throughput_steps_per_s"] > 0
    first = together[0].curves
    assert not first[first.split == "train"].loss.equals(
        together[1].curves[together[1].curves.split == "train"].loss)


def test_vmapped_divergence_is_per_seed(synthetic_task):
    """A seed that diverges stops its own curve; the status is per seed."""
    settings = RunSettings(**{**TINY_SETTINGS, "timing": False, "divergence_factor": 1.0001})
    results = run(synthetic_task, build_optimizer({**ADAM, "learning_rate": 1.0}), settings,
                  [0, 1])
    for result in results:
        train = result.curves[result.curves.split == "train"]
        if result.status == "diverged":
            assert len(train) == result.summary["steps_completed"] + 1
            assert np.isnan(result.summary["final_eval_loss"])
        else:
            assert len(train) == TINY_SETTINGS["steps"]
    assert "diverged" in [r.status for r in results]


def test_seed_batching_auto_picks_by_backend():
    """auto unrolls seeds on CPU and batches them elsewhere (one seed is always a plain scan);
    a bad name is refused."""
    assert resolve_batching("auto", 2, "cpu") == "unroll"
    assert resolve_batching("auto", 2, "gpu") == "vmap"
    assert resolve_batching("vmap", 2, "cpu") == "vmap"
    assert resolve_batching("vmap", 1, "gpu") == "unroll"
    with pytest.raises(ValueError, match="sweep.seed_batching='loop'"):
        resolve_batching("loop", 2)


def test_benchmark_ratios_use_the_fastest_repeat():
    """The seed-throughput ratios compare the fastest repeat of each sweep (synthetic times)."""
    from bench.benchmarks.seed_throughput import MODES, ratios

    rows = [{"mode": mode, "cache": cache, "repeat": r,
             "wall_s": (8.0 if mode.startswith("sequential") else 2.0)
             * (2.0 if cache == "cold" else 1.0) * (1.0 + r)}
            for mode in MODES for cache in ("cold", "warm") for r in range(2)]
    out = ratios(pd.DataFrame(rows))
    assert out["sequential/vmapped (isolated, cold cache)"] == pytest.approx(4.0)
    assert out["sequential/vmapped (shared, warm cache)"] == pytest.approx(4.0)
    assert out["cold/warm cache (vmapped_shared)"] == pytest.approx(2.0)


@pytest.mark.parametrize("argv, expected", [
    (["sweep=smoke"], True),
    (["sweep=smoke", "sweep.jobs=1", "sweep.isolate=true"], True),
    (["-m", "hydra/launcher=local", "sweep=smoke"], False),
    (["sweep=smoke", "sweep.isolate=false"], False),
    (["sweep=smoke", "sweep.jobs=4"], False),
    (["sweep=smoke", "sweep.collect_only=true"], False),
    (["--help"], False),
])
def test_worker_started_ahead_only_where_a_sweep_uses_one(argv, expected):
    from bench.sweep.prestart import worth_starting

    assert worth_starting(argv) is expected


def test_worker_started_ahead_is_taken_only_with_its_environment():
    """A worker started ahead serves the first work item if its environment matches; else it
    is stopped and a fresh one starts. A worker given no payload exits cleanly."""
    from bench.sweep import prestart

    prestart.start({"CUDA_VISIBLE_DEVICES": "1"})
    early = prestart._waiting[0]
    fresh = prestart.take({})
    try:
        assert fresh is not early and early.returncode is not None  # stopped
    finally:
        fresh.kill()
        fresh.communicate()
    prestart.start({})
    early = prestart._waiting[0]
    assert prestart.take({}) is early
    early.communicate("")
    assert early.returncode == 0
    prestart.stop()  # nothing waits any more: a no-op


def test_single_and_seeds_together_rows_have_the_same_columns_and_losses(synthetic_task):
    """One code path makes every row: a single run's row and the row of the same config
    trained with another seed in one program hold the same columns and the same losses."""
    from bench.train.record import Where, run_work

    alone, together = _planned(seed=0), [_planned(seed=s, vmapped=True) for s in (0, 1)]

    def rows(work):
        return run_work(work, "unit", Where(), "auto", lambda _: synthetic_task,
                        build_optimizer)

    [(single, single_curves)] = rows([alone])
    (grouped, grouped_curves), _ = rows(together)
    assert single["status"] == grouped["status"] == "ok"
    assert set(single) == set(grouped)
    losses = [c for c in single if "loss" in c or "accuracy" in c]
    assert {"first_train_loss", "final_train_loss", "final_eval_loss"} <= set(losses)
    for column in losses:
        np.testing.assert_allclose(grouped[column], single[column], rtol=1e-5, err_msg=column)
    np.testing.assert_allclose(grouped_curves.loss, single_curves.loss, rtol=1e-5)
    assert single["step_time_median_s"] > 0 and grouped["step_time_median_s"] is None
    assert (single["vmapped_seeds"], grouped["vmapped_seeds"]) == (1, 2)
