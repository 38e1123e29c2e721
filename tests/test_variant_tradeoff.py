"""The faster-variants figure: its loss axis is the per-task ratio to the exact family
checkpoint on shared seeds (geometric mean over tasks), its time axis the fastest path of each
design in the update benchmark, and a design without a checkpoint sits on the time axis only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.figures import style
from bench.figures.variant_tradeoff import tradeoff_figure, tradeoff_table
from bench.records.files import read_parquet
from tests.conftest import REPO_ROOT

NO_FACTORED = {"opt_use_factored": False, "opt_use_factored_momenta": False}


def _runs() -> pd.DataFrame:
    rows = []
    arms = [("adam(tuned)", "adam", None, {}, {"t1": 1.0, "t2": 2.0}),
            ("exact", "small_fc_lopt", "small_fc_lopt_family", {}, {"t1": 1.0, "t2": 1.0}),
            ("no_factored", "small_fc_lopt", "small_fc_lopt_no_factored_family", NO_FACTORED,
             {"t1": 2.0, "t2": 0.5}),
            ("specialist", "small_fc_lopt", "small_fc_lopt", {}, {"t1": 9.0, "t2": 9.0})]
    for label, name, checkpoint, settings, losses in arms:
        for task, loss in losses.items():
            for seed in (0, 1, 2):
                lopt = name == "small_fc_lopt"
                rows.append({
                    "task": task, "optimizer": label, "optimizer_name": name, "seed": seed,
                    "status": "ok", "num_classes": 10, "final_train_loss": loss,
                    "opt_architecture": "small_fc_lopt" if lopt else None,
                    "opt_checkpoint": checkpoint, "tuned_from": None if lopt else "grid.csv",
                    "meta_trained_on": None if not lopt else (
                        "standard" if label == "specialist" else "image_family"),
                    **(settings if lopt else {})})
    # a seed only the exact arm ran on t1: left out of the ratio
    rows.append({**rows[6], "seed": 7, "final_train_loss": 100.0})
    return pd.DataFrame(rows)


def _bench() -> pd.DataFrame:
    arms = [({"path": "stacked"}, 100.0), ({"path": "unrolled"}, 6.0),
            ({**{k[4:]: v for k, v in NO_FACTORED.items()}}, 2.5),
            ({"normalisation": "lagged"}, 8.0)]
    rows = [{"optimizer_name": "small_fc_lopt", "arm": arm, "num_params": n,
             "update_over_adam": ratio * (1 if n == 10_000_000 else 3)}
            for arm, ratio in arms for n in (1_000_000, 10_000_000)]
    return pd.DataFrame(rows)


def test_variant_points_are_per_task_ratios_on_shared_seeds():
    table = tradeoff_table(_runs(), _bench()).set_index("change")
    exact, cheap = table.loc["default"], table.loc["use_factored=false, use_factored_momenta=false"]
    assert exact.loss_over_exact == pytest.approx(1.0) and exact.update_over_adam == 6.0
    assert cheap.loss_over_exact == pytest.approx(1.0)  # sqrt(2.0 * 0.5): the geometric mean
    assert (cheap.low, cheap.high) == (pytest.approx(0.5), pytest.approx(2.0))
    assert cheap.update_over_adam == 2.5 and cheap.tasks == 2 and cheap.seeds == 3
    assert cheap.loss_over_adam == pytest.approx(np.sqrt(2.0 * 0.25))
    lagged = table.loc["normalisation=lagged"]
    assert np.isnan(lagged.loss_over_exact) and lagged.update_over_adam == 8.0
    assert "small_fc_lopt" not in set(table.checkpoint.dropna())  # specialists are left out


def test_a_variant_is_compared_with_the_exact_design_of_its_own_family():
    """A variant trained on another family is scored against that family's exact checkpoint,
    not the first family's."""
    runs = _runs()
    other = runs[runs.opt_checkpoint == "small_fc_lopt_family"].assign(
        opt_checkpoint="small_fc_lopt_wide_family", meta_trained_on="image_family_wide",
        final_train_loss=3.0)
    variant = other.assign(opt_checkpoint="small_fc_lopt_no_factored_wide_family",
                           final_train_loss=other.task.map({"t1": 1.5, "t2": 3.0}), **NO_FACTORED)
    table = tradeoff_table(pd.concat([runs, other, variant], ignore_index=True), _bench())
    row = table.set_index("checkpoint").loc["small_fc_lopt_no_factored_wide_family"]
    assert row.family == "image_family_wide"
    assert row.loss_over_exact == pytest.approx(np.sqrt(0.5 * 1.0))
    assert (row.low, row.high) == (pytest.approx(0.5), pytest.approx(1.0))
    first = table.set_index("checkpoint").loc["small_fc_lopt_no_factored_family"]
    assert first.loss_over_exact == pytest.approx(1.0)


def test_variant_figure_draws_each_trained_variant_once():
    fig, data = tradeoff_figure(_runs(), _bench(), "test")
    shown = style.read_back(fig)
    assert len(shown) == 2 and sorted(shown.x) == [2.5, 6.0]
    frame = data.frame()
    assert frame[frame.panel == "untrained"].series.tolist() == ["normalisation=lagged"]


def test_variant_figure_draws_the_reference_tables():
    reference = REPO_ROOT / "results" / "reference" / "paper"
    runs = read_parquet(reference / "generalisation_runs.parquet")
    bench = read_parquet(reference / "update_cost.parquet")
    table = tradeoff_table(runs, bench)
    exact = table[(table.change == "default") & (table.checkpoint == "small_fc_lopt_family")]
    assert exact.loss_over_exact.item() == pytest.approx(1.0)
    assert (table.update_over_adam.dropna() > 0).all()
    fig, _ = tradeoff_figure(runs, bench, "test")
    assert len(style.read_back(fig)) == table.loss_over_exact.notna().sum()


def test_a_list_setting_read_back_from_parquet_labels_its_change():
    """A decay list comes back from a Parquet arm as an array: it is compared and labelled as
    the list it was."""
    from bench.figures.variants import change_label

    arm = {"momentum_decays": np.array([0.9]), "hidden_size": 2, "use_factored": False}
    assert change_label(arm) == "hidden_size=2, momentum_decays=[0.9], use_factored=false"
    assert change_label({"momentum_decays": np.array([0.9, 0.99, 0.999])}) == "default"
    # an integer setting read back from a struct column with gaps comes as a float
    assert change_label({"hidden_layers": 0.0, "use_param": False}) == (
        "hidden_layers=0, use_param=false")
