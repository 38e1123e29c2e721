"""Pareto fronts and the sweep figures, from hand-made tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.analysis.stats import pareto_front
from bench.figures.sweep import draw_sweep_figures
from bench.records.files import read_parquet

pytestmark = pytest.mark.filterwarnings("error")  # figures of odd tables draw without warnings


def _brute_force_front(x: np.ndarray, y: np.ndarray) -> list[int]:
    """Indices of points that no other point matches or beats on both axes, sorted by x."""
    keep = []
    for i in range(len(x)):
        dominated = any(
            x[j] <= x[i] and y[j] <= y[i] and (x[j] < x[i] or y[j] < y[i])
            for j in range(len(x)) if j != i
        )
        if not dominated:
            keep.append(i)
    return sorted(keep, key=lambda i: x[i])


def test_pareto_front_hand_made():
    """On shuffled hand-made points the front is exactly the non-dominated points, by x."""
    x = np.array([3.0, 1.0, 4.0, 2.0, 5.0, 2.5])
    y = np.array([4.0, 5.0, 1.0, 3.0, 2.0, 3.5])
    # (1,5) (2,3) (4,1) are non-dominated; (2.5,3.5) (3,4) lose to (2,3); (5,2) loses to (4,1)
    assert pareto_front(x, y).tolist() == [1, 3, 2]


def test_pareto_front_single_point():
    """One point is its own front."""
    assert pareto_front(np.array([2.0]), np.array([7.0])).tolist() == [0]


def test_pareto_front_ties_on_x():
    """Of two points at the same x only the lower one is on the front."""
    x = np.array([1.0, 1.0, 2.0])
    y = np.array([3.0, 2.0, 1.0])
    assert pareto_front(x, y).tolist() == [1, 2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pareto_front_matches_brute_force(seed):
    """On random points the front equals a brute-force dominance check."""
    rng = np.random.default_rng(seed)
    x, y = rng.random(40), rng.random(40)
    assert pareto_front(x, y).tolist() == _brute_force_front(x, y)


def _tables(arms: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two optimizers (three Adam learning rates when ``arms``), two seeds each, with curves;
    and a diverged Lion run."""
    rows, curves = [], []
    adam = [({"learning_rate": lr}, 0.5 + lr) for lr in (0.1, 0.001, 0.01)] if arms \
        else [(None, 0.5)]
    specs = [("adam", arm, 2.0, loss, 40e-6) for arm, loss in adam]
    specs.append(("sgd", None, 0.0, 0.8, 30e-6))
    for name, arm, floats, loss, step_time in specs:
        label = name if arm is None else f"{name}(learning_rate={arm['learning_rate']})"
        for seed in (0, 1):
            rid = f"{label}-{seed}"
            rows.append({
                "run_id": rid, "task": "synthetic", "optimizer": label, "optimizer_name": name,
                "arm": arm, "seed": seed, "status": "ok", "final_eval_loss": loss + 0.01 * seed,
                "final_train_loss": loss, "opt_state_floats_per_param": floats,
                "step_time_median_s": step_time, "step_time_p10_s": 0.9 * step_time,
                "step_time_p90_s": 1.2 * step_time, "update_time_median_s": step_time / 4,
                "num_params": 340, "batch_size": 32, "device_kind": "cpu",
                "cpu_model": "test CPU", "cpu_count": 2,
            })
            steps = np.arange(20)
            curves.append(pd.DataFrame({"run_id": rid, "step": steps, "split": "train",
                                        "loss": 1.5 / (1 + 0.1 * steps) + 0.01 * seed,
                                        "wall_time_s": 1e-3 * (steps + 1)}))
            curves.append(pd.DataFrame({"run_id": rid, "step": [0, 10, 20], "split": "eval",
                                        "loss": [1.5, 1.0, loss], "wall_time_s": [0, 0.01, 0.02]}))
    rows.append({**rows[0], "run_id": "lion-0", "optimizer": "lion", "optimizer_name": "lion",
                 "arm": None, "status": "diverged", "final_eval_loss": np.nan})
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)


def _stored(runs: pd.DataFrame, tmp_path) -> pd.DataFrame:
    """``runs`` as a sweep's runs.parquet gives it back (arms as structs, empty columns None)."""
    runs.to_parquet(tmp_path / "runs.parquet", index=False)
    return read_parquet(tmp_path / "runs.parquet")


def test_draw_sweep_figures_writes_png_and_pdf(tmp_path):
    """draw_sweep_figures writes the Pareto and loss-curve figures as PNG and PDF."""
    runs, curves = _tables()
    folder = tmp_path / "figures"
    paths = draw_sweep_figures(runs, curves, folder)
    names = {p.name for p in paths}
    assert {"pareto.png", "pareto.pdf", "loss_curves.png", "loss_curves.pdf"} <= names
    for path in paths:
        assert path.parent == folder
        data = path.read_bytes()
        magic = b"\x89PNG" if path.suffix == ".png" else b"%PDF"
        assert data.startswith(magic), path
        assert len(data) > 1000, path


def test_timing_only_sweeps_get_the_costs_figure(tmp_path):
    """A sweep without training (no losses) draws the per-optimizer compute/memory bars, and an
    overhead figure when its runs vary the batch size."""
    runs, _ = _tables()
    runs = runs.assign(final_eval_loss=np.nan, step_over_sgd_step=[1.1, 1.2, 1.0, 1.0, 1.3])
    empty = pd.DataFrame(columns=["run_id", "step", "split", "loss", "wall_time_s"])
    names = {p.name for p in draw_sweep_figures(runs, empty, tmp_path / "a")}
    assert names == {"costs.png", "costs.pdf"}
    varied = runs.assign(batch_size=[8, 8, 128, 128, 8])
    names = {p.name for p in draw_sweep_figures(varied, empty, tmp_path / "b")}
    assert names == {"overhead.png", "overhead.pdf", "overhead.csv"}
    shown = pd.read_csv(tmp_path / "b" / "overhead.csv")
    drawn = set(shown[shown.panel == "step_over_sgd_vs_batch_size"].series)
    assert drawn and set(shown[shown.panel == "crossover_batch_size"].series) == drawn


def test_costs_bars_are_the_summary_of_the_ok_runs():
    """The cost bars are each arm's median step over SGD's and its state floats per parameter."""
    from bench.figures import compute, style

    runs, _ = _tables(arms=True)
    runs = runs.assign(step_over_sgd_step=np.arange(len(runs), dtype=float) + 1.0)
    fig, data = compute.costs_figure(runs, "test")
    shown = style.read_back(fig)
    ok = runs[runs.status == "ok"].groupby("optimizer")
    assert shown[shown.panel == "step_over_sgd"].y.tolist() == pytest.approx(
        ok.step_over_sgd_step.median().sort_index().tolist())
    assert shown[shown.panel == "state"].y.tolist() == pytest.approx(
        ok.opt_state_floats_per_param.mean().sort_index().tolist())


def test_throughput_only_runs_draw_without_warnings(tmp_path):
    """Runs whose timing columns are all empty (throughput-only) draw the trained figures and
    nothing timed (warnings fail the test, see ``pytestmark``)."""
    runs, curves = _tables(arms=True)
    timing = [c for c in runs if c.startswith(("step_time", "update_time"))]
    runs = runs.assign(**{c: None for c in timing}, step_over_sgd_step=None,
                       throughput_steps_per_s=500.0)
    runs = _stored(runs, tmp_path)
    assert runs.step_time_median_s.isna().all() and runs.step_time_median_s.dtype == object
    names = {p.name for p in draw_sweep_figures(runs, curves, tmp_path / "figures")}
    assert names == {"pareto.png", "pareto.pdf", "loss_curves.png", "loss_curves.pdf"}


def test_sweep_pareto_shows_every_arm_and_the_paper_the_best():
    """A sweep's Pareto figure has a point per arm; the paper's only each optimizer's best."""
    from bench.figures import pareto

    runs, _ = _tables(arms=True)
    _, every = pareto.pareto_figure(runs, None, "test", best=False)
    _, best = pareto.pareto_figure(runs, None, "test")
    series = lambda d: set(d.frame().series) - {"pareto_front"}  # noqa: E731
    adam = {f"adam(learning_rate={lr})" for lr in (0.1, 0.001, 0.01)}
    assert series(every) == adam | {"sgd"}
    assert series(best) == {"adam(learning_rate=0.001)", "sgd"}


def test_arms_of_one_optimizer_get_shades_of_its_colour(tmp_path):
    """Learning-rate arms of one optimizer are told apart: distinct shades of the optimizer's
    colour, lightest for the smallest value; an optimizer with one arm keeps its own colour."""
    from matplotlib import colors

    from bench.figures import style

    runs = _stored(_tables(arms=True)[0], tmp_path)
    shades = style.arm_colours(runs)
    assert shades["sgd"] == style.colour("sgd")
    adam = [shades[f"adam(learning_rate={lr})"] for lr in (0.001, 0.01, 0.1)]
    assert len(set(adam)) == 3
    brightness = [sum(colors.to_rgb(c)) for c in adam]
    assert brightness == sorted(brightness, reverse=True)
    base = np.array(colors.to_rgb(style.colour("adam")))
    for shade in adam:  # a tint or a shade of Adam's colour: the same hue
        rgb = np.array(colors.to_rgb(shade))
        assert np.corrcoef(rgb, base)[0, 1] > 0.9


def test_arm_shading_follows_the_arm_values_not_the_labels():
    """Arms are ordered by their ``arm`` settings, numbers by value (4 < 16 < 32, which text
    would order 16, 32, 4), whatever their labels say."""
    from matplotlib import colors

    from bench.figures import style

    sizes = {"lopt-b": 32, "lopt-c": 4, "lopt-a": 16}
    table = pd.DataFrame({"optimizer": list(sizes), "optimizer_name": "small_fc_lopt",
                          "arm": [{"hidden_size": n, "path": None} for n in sizes.values()]})
    shades = style.arm_colours(table)
    brightness = {label: sum(colors.to_rgb(shades[label])) for label in sizes}
    assert sorted(sizes, key=brightness.get, reverse=True) == ["lopt-c", "lopt-a", "lopt-b"]
    assert style.arm_key({"learning_rate": 1e-3}) < style.arm_key({"learning_rate": 3e-3})
