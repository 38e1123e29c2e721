"""The end of a sweep: the records merged into the tables, a summary per task and optimizer
printed, the figures drawn; and the one-line outcome of each run as it finishes."""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd

from bench.analysis.summary import summary_table
from bench.records.files import read_parquet
from bench.records.store import RecordStore


def outcome(row: dict[str, Any]) -> str:
    if row["status"] == "ok":
        loss = row.get("final_eval_loss")
        step = row.get("step_time_median_s")
        timing = (f"step {step * 1e6:.1f} us ({row['step_over_sgd_step']:.2f}x SGD's)"
                  if step is not None else
                  f"throughput only: {row.get('throughput_steps_per_s') or 0:.0f} steps/s")
        return (f"ok: {'timing only' if loss is None else f'eval loss {loss:.4f}'}, {timing}, "
                f"state {row['opt_state_floats_per_param']:.2f} floats/param")
    if row["status"] == "diverged":
        return f"diverged after {row.get('steps_completed')} steps"
    return f"{row['status']}: {row['error'][:200]}"


def report(store: RecordStore, planned_ids: set[str] | None, figures: bool,
           rewrite: bool) -> dict[str, int]:
    """Merge the records into the tables (unless current), summarise, draw the figures;
    returns the count of each status among this sweep's runs."""
    if rewrite:
        table, curves = store.collect()
        runs_path, curves_path = store.write_tables(table, curves)
    else:
        runs_path, curves_path = store.folder / "runs.parquet", store.folder / "curves.parquet"
        table = read_parquet(runs_path)
        curves = None
        print("\ntables and figures are up to date with the records (nothing new)")
    this_sweep = table if planned_ids is None else table[table.run_id.isin(planned_ids)]
    print("\nResults (this sweep's runs):")
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(summary_table(this_sweep).to_string())
    statuses = {str(k): int(v) for k, v in this_sweep.status.value_counts().items()}
    print(f"\nstatus: {statuses}")
    print(f"runs:    {runs_path}  ({len(table)} rows)")
    if curves is not None:
        print(f"curves:  {curves_path}  ({len(curves)} rows)")
    if figures and rewrite:
        from bench.figures.sweep import draw_sweep_figures

        paths = draw_sweep_figures(table, curves, store.folder / "figures")
        print(f"figures: {', '.join(str(p) for p in paths if p.suffix == '.png')} (+ PDF)")
    return statuses


def verdict(statuses: dict[str, int]) -> int:
    """The exit code, and a last line where runs failed: 1 when every run failed."""
    total = sum(statuses.values())
    failed = statuses.get("error", 0) + statuses.get("oom", 0)
    if total and failed == total:
        print(f"\nall {total} runs of this sweep failed (status error or oom; the error column "
              "says why)", file=sys.stderr)
        return 1
    if failed:
        print(f"\n{failed} of {total} runs of this sweep failed (status error or oom; the error "
              "column says why; sweep.retry_failed=true reruns them)")
    return 0
