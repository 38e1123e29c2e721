"""Optimizer factories used by the tests through Hydra ``_target_`` paths."""

from __future__ import annotations

from typing import Any

import optax

FAILURE_MESSAGE = "update deliberately failed by tests.helpers"


def record_row(run_id: str, status: str = "ok", **columns: Any) -> dict[str, Any]:
    """A minimal valid record row (``bench.records.schema.record_problem`` accepts it)."""
    return {"run_id": run_id, "sweep": "unit", "optimizer": "adam", "task": "synthetic",
            "seed": 0, "status": status, "num_params": 10, "steps": 5, "steps_completed": 5,
            **columns}


def failing_optimizer(message: str = FAILURE_MESSAGE) -> optax.GradientTransformation:
    """A transformation whose ``init`` works and whose ``update`` raises ``RuntimeError``."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del updates, state, params
        raise RuntimeError(message)

    return optax.GradientTransformation(init, update)
