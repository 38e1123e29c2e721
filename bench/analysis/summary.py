"""The one per-optimizer summary of a runs table: per task and optimizer arm, the runs and how
they ended, performance over seeds (mean, bootstrap interval, spread) and the costs. The sweep's
printed summary, its figures and the paper's Pareto figure all read it."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pandas as pd

from bench.analysis.stats import seed_summary

# Cost columns: (summary column, runs column, aggregation over the group's ok runs).
COSTS = (
    ("step_time_median_s", "step_time_median_s", "median"),
    ("step_time_p10_s", "step_time_p10_s", "median"),
    ("step_time_p90_s", "step_time_p90_s", "median"),
    ("step_over_sgd_step", "step_over_sgd_step", "median"),
    ("update_time_median_s", "update_time_median_s", "median"),
    ("opt_state_floats_per_param", "opt_state_floats_per_param", "mean"),
    ("throughput_steps_per_s", "throughput_steps_per_s", "median"),
    ("num_params", "num_params", "first"),
    ("first_train_loss", "first_train_loss", "mean"),
    ("final_train_loss", "final_train_loss", "mean"),
    ("final_eval_accuracy", "final_eval_accuracy", "mean"),
)


def newest_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """One record per task (and task settings), optimizer label and seed: the newest by
    ``finished_at``. A results folder keeps records of runs its sweep no longer plans (older
    settings of an arm); where they share an arm's label, counting both counts a seed twice."""
    keys = ["task", "optimizer", "seed", *sorted(c for c in runs if c.startswith("task_"))]
    if "finished_at" not in runs or not set(keys[:3]) <= set(runs):
        return runs
    key = runs[keys].astype(str).agg("|".join, axis=1)
    newest = runs.assign(_key=key).sort_values("finished_at", kind="stable")
    return runs.loc[newest.drop_duplicates("_key", keep="last").index.sort_values()]


def of_newest_code(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs made by the code of the newest run: a results folder also keeps runs of
    earlier code (arms a preset no longer plans among them), which a shipped table must not
    mix in."""
    if "code_version" not in runs or runs.empty:
        return runs
    newest = runs.sort_values("finished_at", kind="stable").code_version.iloc[-1]
    return runs[runs.code_version == newest]


def newest_code_tables(runs: pd.DataFrame, curves: pd.DataFrame | None
                       ) -> tuple[pd.DataFrame, pd.DataFrame | None, int]:
    """``of_newest_code`` on a runs table, its curves cut to the runs kept (by run_id), and how
    many runs of earlier code were left out."""
    kept = of_newest_code(runs)
    if curves is not None and "run_id" in curves and "run_id" in kept:
        curves = curves[curves.run_id.isin(kept.run_id)]
    return kept, curves, len(runs) - len(kept)


def optimizer_summary(runs: pd.DataFrame, performance: str = "final_eval_loss",
                      by: Sequence[str] = ("task", "optimizer")) -> pd.DataFrame:
    """Per group: ``runs`` and ``ok`` counts, ``seeds``, the ``performance`` column's ``mean``,
    ``sd``, ``ci_lo``/``ci_hi`` (95% bootstrap) and ``min``/``max`` over ok runs, and the
    costs (``COSTS``); columns a table lacks come out empty."""
    by = list(by)
    numeric = {c for _, c, _ in COSTS} | {performance}
    # Numbers, NaN where a run has none (an all-empty column comes back from Parquet as None).
    runs = runs.assign(**{c: pd.to_numeric(runs[c], errors="coerce") if c in runs
                          else float("nan") for c in numeric})
    counts = runs.groupby(by, sort=True).agg(runs=("run_id", "size"), ok=(
        "status", lambda s: int((s == "ok").sum())))
    performance_table = seed_summary(runs, performance, by).set_index(by)
    ok = runs[runs.status == "ok"]
    with warnings.catch_warnings():  # medians of throughput-only runs' empty timing columns
        warnings.simplefilter("ignore", RuntimeWarning)
        costs = ok.groupby(by, sort=True).agg(**{name: (column, how)
                                                 for name, column, how in COSTS})
        sd = ok.groupby(by, sort=True)[performance].std().rename("sd")
    table = counts.join(performance_table).join(sd).join(costs)
    table["seeds"] = pd.to_numeric(table["seeds"]).fillna(0).astype(int)
    return table.reset_index()


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The summary a sweep prints: per task and optimizer, runs, evaluation loss over seeds,
    step and update times (us), state floats per parameter, accuracy and throughput."""
    table = optimizer_summary(runs)
    shown = pd.DataFrame({
        "runs": table.runs, "ok": table.ok, "params": table.num_params,
        "train_loss_first": table.first_train_loss, "train_loss_final": table.final_train_loss,
        "eval_loss": table["mean"], "eval_loss_sd": table.sd,
        "step_us": table.step_time_median_s * 1e6, "step/sgd": table.step_over_sgd_step,
        "update_us": table.update_time_median_s * 1e6,
        "state_floats/param": table.opt_state_floats_per_param,
        "eval_acc": table.final_eval_accuracy, "steps/s": table.throughput_steps_per_s,
    })
    shown.index = pd.MultiIndex.from_frame(table[["task", "optimizer"]])
    shown = shown.dropna(axis=1, how="all")
    return shown.sort_values("eval_loss" if "eval_loss" in shown else "runs").round(4)
