"""The held-out evaluation suite: its tasks are in no meta-training family, its tuned Adam is
planned per task from the reference table, and its scores are ratios to that Adam."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from bench import meta_train
from bench.figures.generalisation import generalisation_table
from bench.sweep.plan import tuned_arms, tuned_tables
from bench.sweep.settings import SweepConfigError
from tasks.family import identity
from tests.conftest import CONF_DIR

PRESET = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "sweep" / "generalisation.yaml"))


def _shape(config: dict) -> tuple:
    """What an image MLP is, whichever factory builds it (wide_mlp or image_mlp)."""
    hidden = config.get("hidden_sizes") or [config.get("width")] * config.get("depth", 0)
    return (config.get("dataset"), config.get("image_size"), tuple(hidden or ()),
            config.get("batch_size"), config["_target_"].rsplit(".", 2)[-2])


def test_the_suite_and_the_meta_training_families_are_disjoint():
    tasks = PRESET["sweep"]["tasks"]
    assert len(tasks) >= 6
    held_out = [OmegaConf.to_container(OmegaConf.load(CONF_DIR / "task" / f"{t}.yaml"))
                for t in tasks]
    for path in sorted((CONF_DIR / "family").glob("*.yaml")):
        train, validation = meta_train.family_members(OmegaConf.load(path))
        for member in train + validation:
            for config in held_out:
                assert identity(member.config) != identity(config), (path.stem, member.name)
                assert _shape(member.config) != _shape(config), (path.stem, member.name)


def test_tuned_adam_is_planned_per_task_from_the_reference(tmp_path):
    grid = pd.DataFrame({"task": ["a", "a", "b"], "learning_rate": [0.001, 0.01, 0.003],
                         "best": [False, True, True]})
    grid.to_csv(tmp_path / "grid.csv", index=False)
    tables = tuned_tables({"adam": str(tmp_path / "grid.csv")})
    (arm,) = tuned_arms(tables, "a")
    assert (arm.name, arm.label, dict(arm.hparams)) == ("adam", "adam(tuned)",
                                                        {"learning_rate": 0.01})
    assert arm.tuned_from == str(tmp_path / "grid.csv")
    with pytest.raises(SweepConfigError, match="no tuned learning rate for task 'c'"):
        tuned_arms(tables, "c")
    with pytest.raises(SweepConfigError, match="no such table"):
        tuned_tables({"adam": str(tmp_path / "none.csv")})


def test_the_suite_s_tuned_adam_rates_are_in_the_reference():
    for task in PRESET["sweep"]["tasks"]:
        (arm,) = tuned_arms(tuned_tables(PRESET["sweep"]["tuned"]), task)
        assert arm.hparams["learning_rate"] > 0


def test_scores_are_ratios_to_tuned_adam_with_diverged_runs_at_the_clip():
    rows = []
    for seed, (adam, lopt) in enumerate([(0.5, 0.4), (0.6, 0.5), (0.7, np.nan)]):
        base = {"task": "t", "seed": seed, "num_classes": 10, "first_train_loss": 2.3}
        rows += [{**base, "optimizer": "adam(tuned)", "optimizer_name": "adam",
                  "tuned_from": "grid.csv", "status": "ok", "final_train_loss": adam,
                  "meta_trained_on": None},
                 {**base, "optimizer": "small_fc_lopt", "optimizer_name": "small_fc_lopt",
                  "status": "ok" if seed < 2 else "diverged", "final_train_loss": lopt,
                  "meta_trained_on": "image_family"}]
    table = generalisation_table(pd.DataFrame(rows))
    (row,) = table.itertuples()
    clip = 1.5 * np.log(10)
    assert row.loss == pytest.approx((0.4 + 0.5 + clip) / 3)
    assert row.loss_over_adam == pytest.approx(row.loss / 0.6)
    assert row.low <= row.loss_over_adam <= row.high
    assert row.meta_trained_on == "image_family" and row.seeds == 3


def test_a_seed_recorded_under_older_settings_counts_once():
    """Records an arm's older settings left in the folder share its label: the newest record
    of each task, task setting, label and seed is kept, other seeds and task settings stay."""
    from bench.analysis.summary import newest_per_seed

    runs = pd.DataFrame({
        "task": ["t", "t", "t", "t"], "optimizer": ["a", "a", "a", "a"],
        "seed": [0, 0, 1, 0], "task_batch_size": [8, 8, 8, 16],
        "finished_at": ["2026-01-02", "2026-01-01", "2026-01-01", "2026-01-01"],
        "final_train_loss": [1.0, 2.0, 3.0, 4.0]})
    kept = newest_per_seed(runs)
    assert kept["final_train_loss"].tolist() == [1.0, 3.0, 4.0]


def test_a_shipped_table_holds_only_the_newest_codes_runs():
    """Runs left in a results folder by earlier code (an arm the preset dropped) stay out."""
    from bench.analysis.summary import of_newest_code

    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "code_version": ["old", "new", "new"],
                         "finished_at": ["2026-01-01", "2026-01-02", "2026-01-03"]})
    assert of_newest_code(runs).run_id.tolist() == ["b", "c"]
    assert of_newest_code(runs.drop(columns="code_version")).run_id.tolist() == ["a", "b", "c"]
