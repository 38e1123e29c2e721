"""Run records: atomic writes, the merged tables, corrupt files and run ids."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.records.files import read_parquet
from bench.records.schema import CURVE_COLUMNS, RUN_COLUMNS
from bench.records.store import RecordStore
from bench.train.spec import run_id


def _row(rid: str, optimizer: str = "adam", seed: int = 0, **extra) -> dict:
    row = {
        "run_id": rid,
        "sweep": "unit",
        "optimizer": optimizer,
        "task": "synthetic",
        "seed": seed,
        "status": "ok",
        "error": None,
        "num_params": 10,
        "steps": 5,
        "steps_completed": 5,
        "final_eval_loss": 0.5,
        "step_time_median_s": 1e-4,
        "finished_at": "2026-01-01T00:00:00+00:00",
    }
    row.update(extra)
    return row


def _curves(steps: int = 5, scale: float = 1.0) -> pd.DataFrame:
    train = pd.DataFrame({"step": np.arange(steps), "split": "train",
                          "loss": scale / (1.0 + np.arange(steps)),
                          "wall_time_s": 0.01 * np.arange(1, steps + 1)})
    evals = pd.DataFrame({"step": [0, steps], "split": "eval", "loss": [scale, scale / 2],
                          "wall_time_s": [0.0, 0.01 * steps]})
    return pd.concat([train, evals], ignore_index=True)


def test_write_collect_round_trip(tmp_path):
    """Written rows and curves come back from collect and through runs/curves.parquet."""
    store = RecordStore(tmp_path)
    store.write(_row("aaaa", "adam", final_eval_loss=0.25), _curves(5))
    store.write(_row("bbbb", "sgd", final_eval_loss=0.75), _curves(7, scale=2.0))
    runs, curves = store.collect()
    assert set(RUN_COLUMNS) <= set(runs.columns)
    assert sorted(runs.run_id) == ["aaaa", "bbbb"]
    by_id = runs.set_index("run_id")
    assert by_id.loc["aaaa", "final_eval_loss"] == 0.25
    assert by_id.loc["bbbb", "optimizer"] == "sgd"
    assert list(curves.columns) == list(CURVE_COLUMNS)
    assert (curves.run_id == "aaaa").sum() == 5 + 2
    assert (curves.run_id == "bbbb").sum() == 7 + 2

    runs_path, curves_path = store.write_tables(runs, curves)
    on_disk = read_parquet(runs_path)
    assert set(RUN_COLUMNS) <= set(on_disk.columns)
    assert len(on_disk) == 2
    pd.testing.assert_frame_equal(read_parquet(curves_path), curves)


def test_nan_is_stored_as_missing(tmp_path):
    """A NaN loss (a diverged run) is written as valid JSON and reads back as missing."""
    store = RecordStore(tmp_path)
    store.write(_row("cccc", status="diverged", final_eval_loss=float("nan")), None)
    json.loads(store.row_path("cccc").read_text())  # strict JSON: no NaN literal
    assert "NaN" not in store.row_path("cccc").read_text()
    runs, _ = store.collect()
    assert pd.isna(runs.final_eval_loss.iloc[0])


def test_same_run_twice_keeps_latest(tmp_path):
    """Writing a run id again replaces its row and curves: one row, the later one."""
    store = RecordStore(tmp_path)
    store.write(_row("dddd", final_eval_loss=0.9), _curves(5))
    store.write(_row("dddd", final_eval_loss=0.1, finished_at="2026-01-02T00:00:00+00:00"),
                _curves(3))
    runs, curves = store.collect()
    assert len(runs) == 1
    assert runs.final_eval_loss.iloc[0] == 0.1
    assert (curves.split == "train").sum() == 3


def test_rewrite_without_curves_drops_stale_curves(tmp_path):
    """A run rewritten without curves (e.g. now failed) leaves no stale curve file."""
    store = RecordStore(tmp_path)
    store.write(_row("eeee"), _curves(4))
    store.write(_row("eeee", status="error", error="boom"), None)
    assert not store.curves_path("eeee").exists()
    _, curves = store.collect()
    assert len(curves) == 0


def test_corrupt_record_is_skipped_with_warning(tmp_path):
    """A corrupt JSON record is skipped with a warning naming it; other rows survive."""
    store = RecordStore(tmp_path)
    store.write(_row("ffff"), _curves(4))
    store.write(_row("gggg", "sgd"), _curves(4))
    bad = store.records / "0123456789abcdef.json"
    bad.write_text('{"run_id": "0123456789abcdef", "status": ')
    warnings: list[str] = []
    runs, curves = store.collect(warn=warnings.append)
    assert sorted(runs.run_id) == ["ffff", "gggg"]
    assert set(curves.run_id) == {"ffff", "gggg"}
    assert len(warnings) == 1
    assert bad.name in warnings[0]


def test_corrupt_record_default_warning_goes_to_stderr(tmp_path, capsys):
    """Without a warn callback the warning naming the file is printed to stderr."""
    store = RecordStore(tmp_path)
    store.write(_row("hhhh"), None)
    (store.records / "broken.json").write_text("[1, 2")
    runs, _ = store.collect()
    assert runs.run_id.tolist() == ["hhhh"]
    assert "broken.json" in capsys.readouterr().err


def test_record_naming_another_run_is_skipped(tmp_path):
    """A record whose file name disagrees with its run_id is not trusted."""
    store = RecordStore(tmp_path)
    store.write(_row("iiii"), None)
    (store.records / "jjjj.json").write_text(json.dumps(_row("kkkk")))
    warnings: list[str] = []
    runs, _ = store.collect(warn=warnings.append)
    assert runs.run_id.tolist() == ["iiii"]
    assert any("jjjj.json" in w for w in warnings)


def test_no_temporary_files_remain(tmp_path):
    """After writes and table writes only the final files exist (no hidden temporaries)."""
    store = RecordStore(tmp_path)
    store.write(_row("llll"), _curves(3))
    store.write(_row("llll", final_eval_loss=0.3), _curves(3))
    store.write(_row("mmmm"), None)
    store.write_tables(*store.collect())
    assert sorted(p.name for p in store.records.iterdir()) == [
        "llll.curves.parquet", "llll.json", "mmmm.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "curves.parquet", "records", "runs.parquet"]


def test_empty_store_collects_empty_tables(tmp_path):
    """A records folder with no records gives empty tables with the standard columns."""
    store = RecordStore(tmp_path)
    store.records.mkdir(parents=True)
    runs, curves = store.collect()
    assert len(runs) == 0
    assert set(RUN_COLUMNS) <= set(runs.columns)
    assert list(curves.columns) == list(CURVE_COLUMNS)


def test_run_id_ignores_key_order():
    """Equal configs get equal run ids whatever the order of their keys, nested ones too."""
    a = {"optimizer": {"lr": 0.1, "b1": 0.9}, "task": {"name": "t"}, "seed": 0}
    b = {"seed": 0, "task": {"name": "t"}, "optimizer": {"b1": 0.9, "lr": 0.1}}
    assert run_id(a) == run_id(b)
    assert len(run_id(a)) == 16
    int(run_id(a), 16)  # hexadecimal


def test_run_id_changes_with_any_value():
    """Changing one value (nested or top level) changes the run id."""
    base = {"optimizer": {"lr": 0.1, "b1": 0.9}, "seed": 0}
    assert run_id(base) != run_id({"optimizer": {"lr": 0.1, "b1": 0.95}, "seed": 0})
    assert run_id(base) != run_id({"optimizer": {"lr": 0.1, "b1": 0.9}, "seed": 1})


def test_invalid_status_raises(tmp_path):
    """A row with an unknown status is refused and nothing is written."""
    store = RecordStore(tmp_path)
    with pytest.raises(ValueError, match="status"):
        store.write(_row("nnnn", status="finished"), _curves(3))
    assert not store.row_path("nnnn").exists()
    assert not store.curves_path("nnnn").exists()
