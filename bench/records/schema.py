"""The record schema: statuses, the columns every runs table has, and what makes a stored row
a valid record."""

from __future__ import annotations

import math
from typing import Any

STATUSES = ("ok", "diverged", "oom", "error")
# Statuses that are final results: a rerun skips them unless forced.
FINISHED = ("ok", "diverged")

RUN_COLUMNS = (
    "run_id", "sweep", "optimizer", "task", "seed", "batch_size", "num_params", "steps",
    "status", "error", "final_train_loss", "final_eval_loss", "best_eval_loss",
    "step_time_median_s", "step_time_p10_s", "step_time_p90_s", "grad_time_median_s",
    "update_time_median_s", "compile_time_s", "opt_state_bytes", "opt_state_floats_per_param",
    "update_flops", "grad_flops", "peak_device_bytes", "peak_rss_bytes", "device_kind",
    "jax_version", "optax_version", "git_commit",
)
CURVE_COLUMNS = ("run_id", "step", "split", "loss", "wall_time_s")


def json_safe(value: Any) -> Any:
    """A row value as strict JSON holds it: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return json_safe(value.item())
    return value


# What every stored row names, and what a finished run's row adds: a row without them is not a
# record of a run (a hand-edited or foreign file), and its run is redone.
IDENTITY_KEYS = ("run_id", "sweep", "optimizer", "task", "seed", "status")
FINISHED_KEYS = ("num_params", "steps", "steps_completed")


def record_problem(row: Any, run_id: str) -> str | None:
    """Why ``row`` (parsed JSON from the file of run ``run_id``) is not a valid record, or
    None if it is. The one test of validity: the planner and the table builder both use it."""
    if not isinstance(row, dict):
        return f"holds a JSON {type(row).__name__}, not an object"
    if row.get("status") not in STATUSES:
        return f"status={row.get('status')!r}: expected one of {', '.join(STATUSES)}"
    missing = [k for k in (*IDENTITY_KEYS, *(FINISHED_KEYS if row["status"] in FINISHED else ()))
               if k not in row]
    if missing:
        return f"lacks {', '.join(missing)}"
    if row["run_id"] != run_id:
        return f"names run_id {row['run_id']!r}"
    return None
