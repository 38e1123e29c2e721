"""The paper's figure set from the shipped reference tables: every file written, and every
plotted value read back from the figure's artists and checked against its source table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.figures import architecture, compute, curves, lopt_cost, memory, pareto, sources, style
from bench.figures.paper import build
from bench.records.files import read_parquet

REF = sources.REFERENCE
GROUPS = ("memory", "compute", "lopt_cost", "ablation", "pareto", "curves", "architecture",
          "generalisation", "variants")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("paper")
    return out, build(out, origin="reference")


def test_every_group_written_with_index(drawn):
    out, groups = drawn
    assert [g.name for g in groups] == list(GROUPS)
    index = (out / "README.md").read_text()
    for name in GROUPS:
        for suffix, magic in ((".png", b"\x89PNG"), (".pdf", b"%PDF"), (".csv", b"")):
            path = out / "figures" / f"{name}{suffix}"
            data = path.read_bytes()
            assert data.startswith(magic) and len(data) > 100, path
        assert f"figures/{name}.png" in index
    for table in ("memory_table", "architecture_table"):
        assert (out / "figures" / f"{table}.md").read_text().startswith("| optimizer")
        assert f"{table}.md" in index


def test_missing_tables_are_named_with_their_command(drawn, tmp_path):
    _, groups = drawn
    notes = {g.name: " ".join(g.notes) for g in groups}
    assert "`make sweep SWEEP=lopt_vs_adam`" in notes["pareto"]
    assert "reference" in notes["compute"] and "`make bench`" in notes["compute"]
    table = sources.load("lopt_vs_adam", results=tmp_path, reference=tmp_path)
    assert table.missing and "results/lopt_vs_adam/runs.parquet" in table.note()


def test_latest_results_win_over_reference(tmp_path):
    (tmp_path / "overhead").mkdir()
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "overhead" / "runs.parquet")
    table = sources.load("overhead", results=tmp_path)
    assert table.origin == str(tmp_path / "overhead" / "runs.parquet") and table.note() is None
    assert sources.load("overhead", origin="reference", results=tmp_path).from_reference
    with pytest.raises(KeyError, match="'nope'"):
        sources.load("nope")


def test_figures_leave_out_runs_of_earlier_code(tmp_path):
    """A results folder that also keeps an earlier code's runs (an arm a preset dropped among
    them) gives the figures only the newest code's runs and curves, and says so."""
    folder = tmp_path / "generalisation"
    folder.mkdir()
    runs = pd.DataFrame({"run_id": ["old", "new1", "new2"], "code_version": ["a", "b", "b"],
                         "finished_at": ["2026-01-01", "2026-02-01", "2026-02-02"]})
    runs.to_parquet(folder / "runs.parquet")
    pd.DataFrame({"run_id": ["old", "new1", "new2"], "step": [1, 1, 1]}).to_parquet(
        folder / "curves.parquet")
    table = sources.load("generalisation", results=tmp_path)
    assert list(table.runs.run_id) == ["new1", "new2"]
    assert list(table.curves.run_id) == ["new1", "new2"]
    assert table.earlier_code == 1 and "1 runs of earlier code left out" in table.note()


def _check_read_back(fig, data: style.PlotData) -> pd.DataFrame:
    """The artists' data equals the recorded (CSV) data, point for point."""
    plotted, shown = data.frame(), style.read_back(fig)
    assert len(shown) and len(shown) == len(plotted[plotted.kind != "table"])
    for (panel, series), group in plotted.groupby(["panel", "series"], sort=False):
        if group.kind.iloc[0] == "table":  # recorded beside the figure, not drawn
            continue
        got = shown[(shown.panel == panel) & (shown.series == series)]
        assert np.allclose(got.y.to_numpy(float), group.y.to_numpy(float)), (panel, series)
        if group.kind.iloc[0] == "line":
            assert np.allclose(got.x.to_numpy(float), group.x.to_numpy(float)), (panel, series)
    return shown


def test_memory_bars_are_the_measured_state():
    table = memory.memory_table()
    fig, data = memory.memory_figure(table)
    shown = _check_read_back(fig, data)
    for kind in ("matrix", "vector"):
        assert np.allclose(shown[shown.panel == kind].y, table[kind])
    by_name = table.set_index("optimizer")
    assert by_name.loc["sgd", "matrix"] == 0 and by_name.loc["adam", "matrix"] == 2
    assert by_name.loc["mlp_lopt", "matrix"] == 6 and by_name.loc["adafactor", "matrix"] < 0.1


def test_pareto_points_are_seed_means_of_the_runs():
    runs = read_parquet(REF / "default_runs.parquet")
    fig, data = pareto.pareto_figure(runs, None, "test")
    shown = _check_read_back(fig, data)
    ok = runs[runs.status == "ok"].groupby(["task", "optimizer"])
    loss, step = ok.final_eval_loss.mean(), ok.step_time_median_s.median()
    floats = ok.opt_state_floats_per_param.mean()
    for (task, name), value in loss.items():
        for axis, x in (("compute", step[(task, name)] * 1e3), ("memory", floats[(task, name)])):
            point = shown[(shown.panel == f"{task}:{axis}") & (shown.series == name)]
            assert point.y.item() == pytest.approx(value) and point.x.item() == pytest.approx(x)


def test_curves_are_seed_means_of_the_eval_losses():
    runs = read_parquet(REF / "default_runs.parquet")
    table = read_parquet(REF / "default_curves.parquet")
    fig, data = curves.curves_figure(runs, table, "test")
    shown = _check_read_back(fig, data)
    evals = table[table.split == "eval"].join(runs.set_index("run_id")[["task", "optimizer"]],
                                              on="run_id")
    expected = evals.groupby(["task", "optimizer", "step"]).loss.mean()
    for (task, name, step), value in expected.items():
        point = shown[(shown.panel == f"{task}:eval") & (shown.series == name) & (shown.x == step)]
        assert point.y.item() == pytest.approx(value)


def test_compute_ratios_come_from_the_runs():
    runs = read_parquet(REF / "overhead.parquet")
    bench = read_parquet(REF / "update_cost.parquet")
    fig, data = compute.compute_figure(runs, bench, "test")
    shown = _check_read_back(fig, data)
    at_2410 = runs[(runs.num_params == 2410) & (runs.status == "ok")]
    for row in at_2410.itertuples():
        point = shown[(shown.panel == "step_over_sgd_vs_batch_size")
                      & (shown.series == row.optimizer) & (shown.x == row.batch_size)]
        assert point.y.item() == pytest.approx(row.step_over_sgd_step)
        adam = at_2410[(at_2410.optimizer == "adam") & (at_2410.batch_size == row.batch_size)]
        point = shown[(shown.panel == "step_over_adam_vs_batch_size")
                      & (shown.series == row.optimizer) & (shown.x == row.batch_size)]
        assert point.y.item() == pytest.approx(
            row.step_time_median_s / adam.step_time_median_s.item())
    for row in bench.itertuples():
        point = shown[(shown.panel == "update_over_adam_vs_num_params")
                      & (shown.series == row.optimizer) & (shown.x == row.num_params)]
        assert point.y.item() == pytest.approx(row.update_over_adam, rel=1e-6)


def test_crossover_is_the_batch_size_from_which_steps_stay_cheap():
    """The crossover batch size: from there on every larger batch's step is at most 1.5x
    SGD's (a dip below that further down does not count); none where the largest is above."""
    ratios = {"dips": [3.0, 1.4, 1.6, 1.2, 1.1], "cheap": [1.2, 1.1, 1.0, 1.0, 1.0],
              "dear": [9.0, 5.0, 3.0, 2.0, 1.6]}
    batches = [8, 32, 128, 512, 4096]
    table = pd.DataFrame([{"optimizer": name, "batch_size": b, "num_params": 2410,
                           "over_sgd": r} for name, rs in ratios.items()
                          for b, r in zip(batches, rs)])
    wide = table.assign(num_params=76810, batch_size=128, over_sgd=9.0)  # another width
    sizes = compute.crossover_batch_sizes(pd.concat([table, wide, table.iloc[:5]]))
    assert sizes.to_dict() == pytest.approx({"cheap": 8.0, "dear": np.nan, "dips": 512.0},
                                            nan_ok=True)
    assert compute.crossover_note(table) == (
        "Crossover batch size (a step at most 1.5x a plain-SGD step from there on): "
        "cheap 8, dear >4,096, dips 512.")


def test_the_reference_compute_figure_records_each_crossover():
    runs = read_parquet(REF / "overhead.parquet")
    _, data = compute.compute_figure(runs, None, "test")
    rows = data.frame().query("panel == 'crossover_batch_size'")
    expected = compute.crossover_batch_sizes(compute.overhead_table(runs))
    assert sorted(rows.series) == sorted(expected.index) == sorted(runs.optimizer.unique())
    assert rows.set_index("series").y.sort_index().tolist() == pytest.approx(
        expected.sort_index().tolist(), nan_ok=True)


def test_a_figure_draws_the_rows_of_one_machine():
    """Rows measured on another machine are left out of a figure, with a note naming it."""
    runs = read_parquet(REF / "overhead.parquet")
    moved = runs.iloc[:3].assign(cpu_model="Other CPU", cpu_count=64)
    notes: list[str] = []
    kept = style.one_machine(pd.concat([runs, moved], ignore_index=True), notes)
    assert len(kept) == len(runs) and "Other CPU" not in set(kept.cpu_model)
    assert notes == ["3 row(s) measured on another machine left out (cpu; Other CPU (64 cores))."]
    fig, _ = compute.compute_figure(pd.concat([runs, moved]), None, "test")
    footnote = " ".join(t.get_text() for t in fig.texts)
    assert "Other CPU" in footnote and "left out" in footnote
    assert "unknown hardware" not in footnote  # no benchmark table: one machine named
    assert style.one_machine(runs, notes) is runs and len(notes) == 1


def test_lopt_cost_from_the_design_runs():
    runs = read_parquet(REF / "lopt_design.parquet")
    fig, data = lopt_cost.lopt_cost_figure(runs, "test")
    shown = _check_read_back(fig, data)
    by_label = runs.set_index("optimizer").step_over_sgd_step
    bars = shown[shown.panel == "paths"].y.tolist()
    assert bars == pytest.approx([by_label['small_fc_lopt(path="stacked")'],
                                  by_label['small_fc_lopt(path="unrolled")']])
    two = shown[(shown.panel == "vs_hidden_size") & (shown.series == "2 hidden layers")]
    assert two.x.tolist() == [1, 2, 4, 8, 16, 32]
    assert two.y.iloc[0] == pytest.approx(by_label["small_fc_lopt(hidden_size=1)"])


def test_architecture_counts():
    table = architecture.architecture_table().set_index("optimizer")
    assert table.meta_params.to_dict() == {"small_fc_lopt": 197, "mlp_lopt": 1762,
                                           "rnn_mlp_lopt": 35799, "nn_adam": 6856}
    assert table.loc["small_fc_lopt", "flops_per_param_network"] == 2 * (39 * 4 + 4 * 4 + 4 * 2)
    assert table.loc["small_fc_lopt", "per_param_inputs"] == 39
    assert table.loc["mlp_lopt", "state_floats_per_param_matrix"] == 6
    fig, data = architecture.architecture_figure(table.reset_index())
    assert set(data.frame().series) == {"meta_params", "state_floats_per_param_matrix",
                                        "flops_per_param_network"}


def test_ablation_points_are_seed_means_per_variant():
    runs = read_parquet(REF / "lopt_ablation.parquet")
    fig, data = __import__("bench.figures.ablation", fromlist=["x"]).ablation_figure(runs, "t")
    shown = _check_read_back(fig, data)
    loss = shown[shown.panel == "loss"]
    plotted = data.frame()
    plotted = plotted[plotted.panel == "loss"]
    lopt = runs.optimizer_name == "small_fc_lopt"
    stacked = runs.arm.map(lambda arm: isinstance(arm, dict) and arm.get("path") == "stacked")
    expected = runs[lopt & ~stacked].groupby("optimizer").final_eval_loss.mean()
    assert sorted(loss.x) == pytest.approx(sorted(expected))
    assert "default" in plotted.change.tolist()
    # The figure says so exactly when some learned variant is not meta-trained.
    untrained = not runs.loc[lopt, "meta_trained"].all()
    assert any("untrained" in t.get_text() for t in fig.texts) == untrained
    stand_in = runs.assign(meta_trained=~lopt)
    fig, _ = __import__("bench.figures.ablation", fromlist=["x"]).ablation_figure(stand_in, "t")
    assert any("untrained" in t.get_text() for t in fig.texts)


def test_reference_tables_name_each_optimizer_and_arm():
    """Every reference table names its rows' optimizer config and arm; list settings are lists."""
    for name in ("default_runs", "lopt_vs_adam_runs", "lopt_design", "lopt_ablation", "overhead",
                 "update_cost"):
        runs = read_parquet(REF / f"{name}.parquet")
        assert runs.optimizer_name.notna().all() and "arm" in runs, name
    runs = read_parquet(REF / "lopt_vs_adam_runs.parquet")
    adam = runs[runs.optimizer_name == "adam"]
    assert adam.arm.map(lambda arm: arm["learning_rate"]).tolist() == pytest.approx(
        adam.opt_learning_rate.tolist())
    decays = runs.opt_momentum_decays.dropna()
    assert len(decays) and {tuple(d) for d in decays} == {(0.9, 0.99, 0.999),
                                                          (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)}


def test_variant_settings_from_list_columns():
    """Design settings come from Parquet list columns (arrays or lists) as the Config's tuples."""
    from bench.figures.variants import design

    row = pd.Series({"opt_adafactor_decays": np.array([]), "opt_momentum_decays": [0.9, 0.99],
                     "opt_hidden_size": 8.0, "opt_use_time": np.bool_(False),
                     "opt_rms_decays": None})
    assert design(row) == {"adafactor_decays": (), "momentum_decays": (0.9, 0.99),
                           "hidden_size": 8, "use_time": False}
    assert type(design(row)["use_time"]) is bool
