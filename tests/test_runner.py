"""One run on the synthetic task: curves, determinism, timings, divergence, protocols."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import ADAM, TINY_SETTINGS

STEPS = TINY_SETTINGS["steps"]
EVAL_EVERY = TINY_SETTINGS["eval_every"]


@pytest.fixture(scope="module")
def adam_run(tiny_run):
    """Adam on the synthetic task with the tiny settings (shared with other test modules)."""
    return tiny_run(ADAM)


def _train_losses(result) -> np.ndarray:
    train = result.curves[result.curves.split == "train"].sort_values("step")
    return train.loss.to_numpy()


def test_status_ok(adam_run):
    """A sensible run finishes with status ok and every step completed."""
    assert adam_run.status == "ok"
    assert adam_run.summary["steps_completed"] == STEPS


def test_curves_have_every_train_step(adam_run):
    """The curves hold one finite train loss for each step 0..steps-1, in order."""
    train = adam_run.curves[adam_run.curves.split == "train"]
    assert train.step.tolist() == list(range(STEPS))
    assert np.isfinite(train.loss).all()
    assert (np.diff(train.wall_time_s.to_numpy()) > 0).all()


def test_curves_have_scheduled_evals(adam_run):
    """Evaluation rows fall at step 0, every eval_every steps and at the last step."""
    evals = adam_run.curves[adam_run.curves.split == "eval"]
    expected = sorted({0, *range(EVAL_EVERY, STEPS, EVAL_EVERY), STEPS})
    assert STEPS % EVAL_EVERY != 0  # the end is a separate evaluation point
    assert evals.step.tolist() == expected
    assert np.isfinite(evals.loss).all()


def test_same_seed_same_losses(adam_run, tiny_run):
    """Running again with the same seed reproduces every training loss exactly."""
    again = tiny_run(ADAM, fresh=True)
    assert again is not adam_run
    np.testing.assert_array_equal(_train_losses(again), _train_losses(adam_run))


def test_training_lowers_eval_loss(adam_run):
    """The final evaluation loss is below the evaluation loss at step 0."""
    evals = adam_run.curves[adam_run.curves.split == "eval"]
    initial = float(evals[evals.step == 0].loss.iloc[0])
    final = adam_run.summary["final_eval_loss"]
    assert final == pytest.approx(float(evals.loss.iloc[-1]))
    assert final < initial
    assert adam_run.summary["best_eval_loss"] <= final


def test_timings_are_positive_and_ordered(adam_run):
    """Every median time is positive and p10 <= median <= p90 for each timed function."""
    summary = adam_run.summary
    medians = [k for k in summary if k.endswith("_median_s")]
    assert {"step_time_median_s", "grad_time_median_s", "update_time_median_s"} <= set(medians)
    for key in medians:
        prefix = key.removesuffix("_median_s")
        assert summary[key] > 0, key
        assert summary[f"{prefix}_p10_s"] <= summary[key] <= summary[f"{prefix}_p90_s"], prefix
    assert summary["compile_time_s"] > 0
    assert summary["train_time_s"] > 0


def test_scan_protocol_sample_count(adam_run):
    """Under scan, timing_steps / timing_block timed calls are made of each function."""
    summary = adam_run.summary
    assert summary["timing_protocol"] == "scan"
    assert summary["timing_block"] == TINY_SETTINGS["timing_block"]
    expected = TINY_SETTINGS["timing_steps"] // TINY_SETTINGS["timing_block"]
    assert summary["step_time_n"] == expected
    assert summary["update_time_n"] == expected


def test_per_call_protocol(tiny_run, adam_run):
    """The per_call protocol runs, times one step per call, and does not change training."""
    result = tiny_run(ADAM, timing_protocol="per_call")
    summary = result.summary
    assert result.status == "ok"
    assert summary["timing_protocol"] == "per_call"
    assert summary["timing_block"] == 1
    assert summary["step_time_n"] == TINY_SETTINGS["timing_steps"]
    assert summary["step_time_median_s"] > 0
    np.testing.assert_array_equal(_train_losses(result), _train_losses(adam_run))


def test_huge_learning_rate_diverges(tiny_run):
    """SGD at learning rate 1e4 stops early with status diverged."""
    result = tiny_run({"_target_": "optax.sgd", "learning_rate": 1e4})
    losses = _train_losses(result)
    assert result.status == "diverged"
    assert 0 < len(losses) < STEPS
    limit = TINY_SETTINGS.get("divergence_factor", 10.0) * abs(losses[0])
    assert not np.isfinite(losses[-1]) or losses[-1] > limit
    assert result.summary["steps_completed"] == len(losses) - 1
    assert math.isnan(result.summary["final_eval_loss"])


def test_timing_only_run(tiny_run):
    """steps=0 measures costs without training: status ok and no curves."""
    result = tiny_run({"_target_": "optax.sgd", "learning_rate": 0.1}, steps=0)
    assert result.status == "ok"
    assert len(result.curves) == 0
    assert result.summary["steps_completed"] == 0
    assert result.summary["step_time_median_s"] > 0
    assert result.summary["step_over_sgd_step"] > 0
