"""Task metrics (accuracy) evaluated beside the loss and summarised in the run's row."""

from __future__ import annotations

import dataclasses

import numpy as np

from bench.train.run import run_one
from bench.train.settings import RunSettings
from optimizers import build_optimizer
from tasks.mlp import accuracy, apply_mlp
from tests.conftest import ADAM, TINY_SETTINGS


def test_run_without_metrics_has_nan_accuracy(tiny_run):
    """A task without metrics still gets the accuracy columns, as NaN."""
    summary = tiny_run(ADAM).summary
    assert np.isnan(summary["final_eval_accuracy"])
    assert np.isnan(summary["best_eval_accuracy"])
    assert summary["num_classes"] is None
    assert np.isfinite(summary["first_train_loss"])


def test_run_with_accuracy_reports_it(synthetic_task):
    """With an accuracy metric the run reports the final and best evaluation accuracy, which
    is a fraction and improves on chance on the learnable synthetic task."""

    def metrics(params, batch):
        return {"accuracy": accuracy(apply_mlp(params, batch["x"]), batch["label"])}

    task = dataclasses.replace(synthetic_task, metrics=metrics, num_classes=4)
    result = run_one(task, build_optimizer(ADAM), RunSettings(**{**TINY_SETTINGS, "steps": 60}))
    summary = result.summary
    assert 0.0 <= summary["final_eval_accuracy"] <= summary["best_eval_accuracy"] <= 1.0
    assert summary["best_eval_accuracy"] > 0.4  # chance is 0.25
    assert summary["num_classes"] == 4
    assert summary["final_train_loss"] < summary["first_train_loss"]
