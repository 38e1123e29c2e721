"""The tuned-Adam reference and the scores built on it, on synthetic curves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.analysis import normalise

STEPS = 400
RATES = (0.01, 0.03, 0.1)
REFERENCE_FILE = Path(__file__).resolve().parent.parent / "results/reference/tuned_adam.parquet"


def _curve(rate: float, steps: int = STEPS, speed: float = 1.0, seed: int = 0) -> np.ndarray:
    """A loss curve still falling at the end of the budget, faster for larger rates, with a
    little seeded noise."""
    t = np.arange(steps) * speed
    noise = 1e-4 * np.random.default_rng(seed).standard_normal(steps)
    return 1.0 + 2.0 * np.exp(-rate * t / 30) + noise


def _tables(curves_by_run: dict[str, tuple[str, float, int, np.ndarray]],
            num_classes: float = np.nan, status: dict[str, str] | None = None):
    rows, long = [], []
    for rid, (task, rate, seed, losses) in curves_by_run.items():
        rows.append({"run_id": rid, "task": task, "optimizer": "adam", "seed": seed,
                     "opt_learning_rate": rate, "steps": STEPS, "num_params": 10,
                     "num_classes": num_classes, "status": (status or {}).get(rid, "ok"),
                     "steps_completed": len(losses),
                     "final_train_loss": float(np.mean(losses[-max(1, len(losses) // 10):]))})
        long.append(pd.DataFrame({"run_id": rid, "step": np.arange(len(losses)),
                                  "split": "train", "loss": losses}))
        long.append(pd.DataFrame({"run_id": rid, "step": [0], "split": "eval", "loss": [9.0]}))
    return pd.DataFrame(rows), pd.concat(long, ignore_index=True)


def _adam_sweep(task: str = "toy", seeds: int = 2, **kwargs):
    runs = {f"{task}-{rate}-{seed}": (task, rate, seed, _curve(rate, seed=seed))
            for rate in RATES for seed in range(seeds)}
    return _tables(runs, **kwargs)


def test_ema_of_constant_and_step():
    """The EMA keeps a constant and moves 5% of the way to a new value per step."""
    np.testing.assert_allclose(normalise.ema(np.full(10, 3.0)), 3.0)
    out = normalise.ema(np.array([0.0, 1.0, 1.0]))
    np.testing.assert_allclose(out, [0.0, 0.05, 0.05 + 0.95 * 0.05])


def test_envelope_is_monotone_lower_bound():
    """The envelope is non-increasing and below every learning rate's curve, and equals the
    running minimum of their pointwise minimum."""
    curves = np.stack([_curve(r, seed=i) for i, r in enumerate(RATES)])
    curves[0, 200:] = np.nan  # a missing stretch never wins
    env = normalise.envelope(curves)
    assert np.all(np.diff(env) <= 0)
    assert np.all(env <= np.nanmin(curves, axis=0) + 1e-12)
    np.testing.assert_allclose(env, np.minimum.accumulate(np.nanmin(curves, axis=0)))


def test_steps_to_reach():
    """The first step at which the envelope is at or below a loss; the budget when never."""
    env = np.array([5.0, 4.0, 4.0, 2.0, 1.0])
    np.testing.assert_array_equal(normalise.steps_to_reach(env, [6.0, 4.0, 3.0, 1.0, 0.5]),
                                  [0, 1, 3, 4, 5])


def test_reference_table_shape_and_best_rate():
    """One row per task and step; the best rate is the fastest-falling one here; the adam_loss
    column is monotone non-increasing."""
    runs, curves = _adam_sweep()
    reference, grid = normalise.build_reference(runs, curves)
    assert list(reference.step) == list(range(STEPS))
    assert set(reference.best_learning_rate) == {0.1}
    assert np.all(np.diff(reference.adam_loss) <= 0)
    assert sorted(grid.learning_rate) == sorted(RATES)
    assert grid.loc[grid.best, "learning_rate"].tolist() == [0.1]
    assert set(reference.seeds) == {2}


def test_adam_best_curve_has_speedup_one():
    """A run whose curve is tuned Adam's best (mean) curve scores speedup 1 at every step and
    a loss ratio of 1."""
    runs, curves = _adam_sweep()
    reference, _ = normalise.build_reference(runs, curves)
    best = np.mean([_curve(0.1, seed=s) for s in range(2)], axis=0)
    run, run_curves = _tables({"probe": ("toy", 0.1, 0, best)})
    run["final_train_loss"] = normalise.ema(best)[-1]
    scored = normalise.add_scores(run, run_curves, reference).iloc[0]
    assert scored.speedup_over_adam == pytest.approx(1.0)
    assert scored.speedup_over_adam_mean == pytest.approx(1.0, abs=0.02)
    assert scored.loss_over_adam == pytest.approx(1.0)


def test_twice_as_fast_run_scores_about_two():
    """A run that follows the best curve at twice the pace, for half the steps, has a speedup
    near 2 and a loss ratio below 1."""
    runs, curves = _adam_sweep()
    reference, _ = normalise.build_reference(runs, curves)
    fast = _curve(0.1, steps=STEPS // 2, speed=2.0, seed=7)
    run, run_curves = _tables({"fast": ("toy", 0.1, 0, fast)})
    scored = normalise.add_scores(run, run_curves, reference).iloc[0]
    assert scored.speedup_over_adam == pytest.approx(2.0, rel=0.1)
    assert scored.loss_over_adam < 1.0
    slow = _curve(0.03, seed=8)
    run, run_curves = _tables({"slow": ("toy", 0.03, 0, slow)})
    assert normalise.add_scores(run, run_curves, reference).iloc[0].speedup_over_adam < 0.7


def test_unknown_task_scores_nan():
    """A task without a reference gets NaN scores (the columns exist)."""
    runs, curves = _adam_sweep()
    reference, _ = normalise.build_reference(runs, curves)
    other, other_curves = _tables({"x": ("other", 0.1, 0, _curve(0.1))})
    scored = normalise.add_scores(other, other_curves, reference)
    for column in ("loss_over_adam", "speedup_over_adam", "speedup_over_adam_mean"):
        assert column in scored and scored[column].isna().all()


def test_classification_losses_are_clipped_and_diverged_runs_padded():
    """With 10 classes losses are clipped at 1.5 ln 10; a diverged (short) run counts as the
    clip value for the rest of the budget and cannot win."""
    clip = 1.5 * math.log(10)
    runs = {f"r{rate}": ("toy", rate, 0, _curve(rate)) for rate in RATES}
    blown = np.concatenate([np.linspace(3.0, 1e6, 50), [np.inf]])
    runs["blown"] = ("toy", 1.0, 0, blown)
    table, curves = _tables(runs, num_classes=10, status={"blown": "diverged"})
    reference, grid = normalise.build_reference(table, curves)
    np.testing.assert_allclose(reference.loss_clip, clip)
    assert reference.adam_loss.max() <= clip
    blown_row = grid[grid.learning_rate == 1.0].iloc[0]
    assert blown_row.final_smoothed_loss == pytest.approx(clip)
    assert blown_row.diverged == 1
    assert set(reference.best_learning_rate) == {0.1}


def test_cli_writes_reference_and_grid(tmp_path, capsys):
    """`python -m bench.analysis.normalise FOLDER --out PATH` writes the reference and its grid."""
    runs, curves = _adam_sweep()
    runs.to_parquet(tmp_path / "runs.parquet")
    curves.to_parquet(tmp_path / "curves.parquet")
    out = tmp_path / "ref" / "tuned_adam.parquet"
    assert normalise.main([str(tmp_path), "--out", str(out)]) == 0
    loaded = normalise.load_reference(out)
    assert {"task", "step", "adam_loss", "best_learning_rate"} <= set(loaded.columns)
    assert (tmp_path / "ref" / "tuned_adam_grid.csv").is_file()
    assert "best learning rate per task" in capsys.readouterr().out


def test_missing_reference_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="tune_adam"):
        normalise.load_reference(tmp_path / "nope.parquet")


def test_stored_reference_is_well_formed():
    """The committed tuned-Adam table covers the standard task and at least two others, with
    one best learning rate each and a monotone non-increasing envelope."""
    reference = normalise.load_reference(REFERENCE_FILE)
    assert "fmnist_mlp8" in set(reference.task) and reference.task.nunique() >= 3
    for _, group in reference.groupby("task"):
        group = group.sort_values("step")
        assert group.best_learning_rate.nunique() == 1
        assert np.all(np.diff(group.adam_loss.to_numpy()) <= 0)
        assert np.all(np.isfinite(group.adam_loss))
        assert list(group.step) == list(range(len(group)))



def test_failed_runs_and_missing_curves():
    """Runs that failed (error) are not scored; a missing curves table is a TypeError."""
    runs, curves = _adam_sweep()
    reference, _ = normalise.build_reference(runs, curves)
    failed = runs.assign(status="error")
    assert normalise.add_scores(failed, curves, reference).loss_over_adam.isna().all()
    with pytest.raises(TypeError, match="curves"):
        normalise.add_scores(runs, None, reference)
