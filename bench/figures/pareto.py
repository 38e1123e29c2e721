"""Figure 5, the Pareto fronts: performance against step time and against optimizer-state
memory, hand-designed and learned optimizers, the front drawn, bars over seeds.

Performance is the final training loss (mean of the last 10% of steps) over tuned Adam's at
the same step (``loss_over_adam`` from ``bench.analysis.normalise``: the lower envelope of Adam's
learning-rate sweep) where that module and its reference table exist; otherwise the raw final
evaluation loss, which the figure says. Where a table holds several learning rates of one
optimizer, each optimizer is shown at its best (lowest mean loss over seeds) per task.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bench.analysis.stats import pareto_front
from bench.analysis.summary import optimizer_summary
from bench.figures import style

RAW = "final_eval_loss"
NORMALISED = "loss_over_adam"
TUNED_ADAM = Path("results/reference/tuned_adam.parquet")
AXES = {  # panel: (column, p10, p90, label, scale)
    "compute": ("step_time_median_s", "step_time_p10_s", "step_time_p90_s",
                "training step time, median (ms; bars: p10-p90)", 1e3),
    "memory": ("opt_state_floats_per_param", None, None,
               "optimizer state (floats per parameter)", 1.0),
}


def normalise(runs: pd.DataFrame, curves: pd.DataFrame | None,
              reference: Path = TUNED_ADAM) -> tuple[pd.DataFrame, str, str | None]:
    """Runs with the performance column to plot, its name, and a note when falling back."""
    if curves is None and NORMALISED in runs and runs[NORMALISED].notna().any():
        return runs, NORMALISED, None  # a reference table, scored when it was made
    try:
        module = importlib.import_module("bench.analysis.normalise")
    except ImportError:
        return runs, RAW, ("Performance is raw final eval loss: bench.analysis.normalise (scores "
                           "against tuned Adam) is not available.")
    if not reference.exists():
        return runs, RAW, (f"Performance is raw final eval loss: {reference} (tuned Adam) "
                           "is missing.")
    try:
        scored = module.add_scores(runs, curves, module.load_reference(str(reference)))
    except Exception as exc:  # a task without a tuned-Adam reference, say
        return runs, RAW, f"Performance is raw final eval loss: normalising failed ({exc})."
    if NORMALISED not in scored or scored[NORMALISED].notna().sum() == 0:
        return runs, RAW, "Performance is raw final eval loss: no task has a tuned-Adam score."
    return scored, NORMALISED, None


def best_arms(runs: pd.DataFrame, performance: str) -> pd.DataFrame:
    """Of several arms (learning rates) of one optimizer on a task, keep the best one's runs."""
    runs = style.numeric(runs, (performance,))
    ok = runs[(runs.status == "ok") & runs[performance].notna()]
    ok = ok.assign(_name=style.names(ok))
    means = ok.groupby(["task", "_name", "optimizer"])[performance].mean().reset_index()
    best = means.loc[means.groupby(["task", "_name"])[performance].idxmin()]
    keep = set(zip(best.task, best.optimizer))
    return ok[[key in keep for key in zip(ok.task, ok.optimizer)]].drop(columns="_name")


def pareto_table(runs: pd.DataFrame, performance: str, best: bool = True) -> pd.DataFrame:
    """Per task and optimizer (its best arm, or every arm): performance over seeds with its
    bootstrap interval and the costs, from ``optimizer_summary``."""
    chosen = best_arms(runs, performance) if best else runs
    table = optimizer_summary(chosen, performance, by=("task", "optimizer"))
    table = table[table.seeds > 0].reset_index(drop=True)
    return style.with_facts(table, runs)


def _throughput_fallback(runs: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Throughput-only runs (seeds trained together) have no step times: their compute axis is
    then seconds per step of the whole program, which the figure says."""
    timed = style.numeric(runs, ("step_time_median_s", "throughput_steps_per_s"))
    if timed.step_time_median_s.notna().any() or timed.throughput_steps_per_s.isna().all():
        return runs, None
    runs = runs.assign(step_time_median_s=1.0 / timed.throughput_steps_per_s,
                       step_time_p10_s=np.nan, step_time_p90_s=np.nan)
    return runs, ("Compute axis: seconds per training step from throughput (throughput-only "
                  "runs, seeds trained together), not timing-grade step times.")


def _panel(ax, data: style.PlotData, panel: str, sub: pd.DataFrame, column: str,
           spread: tuple[str | None, str | None], scale_by: float) -> bool:
    """One task's points against one cost, and their front; False where none has that cost."""
    x, y = sub[column].to_numpy(float) * scale_by, sub["mean"].to_numpy(float)
    drawn = np.isfinite(x) & np.isfinite(y)
    if not drawn.any():
        return False
    sub, x, y = sub[drawn].reset_index(drop=True), x[drawn], y[drawn]
    shades = style.arm_colours(sub)
    p10, p90 = spread
    for i, row in sub.iterrows():
        name = row.optimizer
        xerr = None
        if p10 and np.isfinite(row[p10]) and np.isfinite(row[p90]):
            xerr = [[x[i] - row[p10] * scale_by], [row[p90] * scale_by - x[i]]]
        bar = ax.errorbar([x[i]], [y[i]], yerr=[[y[i] - row.ci_lo], [row.ci_hi - y[i]]],
                          xerr=xerr, fmt=style.marker(row.optimizer_name), color=shades[name],
                          ms=7, capsize=3, label=f"{name} ({int(row.seeds)} seeds)")
        style.tag(bar.lines[0], panel, name)
        data.add(panel, name, "line", x[i], y[i], row.ci_lo, row.ci_hi)
        ax.annotate(name, (x[i], y[i]), textcoords="offset points", xytext=(5, 4), fontsize=7)
    front = pareto_front(x, y)
    (line,) = ax.step(x[front], y[front], where="post", color="black", lw=1.2, alpha=0.6,
                      label="Pareto front")
    style.tag(line, panel, "pareto_front")
    data.add(panel, "pareto_front", "line", x[front], y[front])
    return True


def pareto_figure(runs: pd.DataFrame | None, curves: pd.DataFrame | None, scale: str,
                  notes: list[str] = (), best: bool = True) -> tuple[plt.Figure, style.PlotData]:
    """One row per task; columns: performance against compute and against memory. ``best``
    shows each optimizer at its best arm, else every arm (a sweep's own figure)."""
    style.apply()
    data = style.PlotData()
    notes = list(notes)
    performance = RAW
    if runs is not None:
        runs, performance, note = normalise(runs, curves)
        if note:
            notes.append(note)
        runs, note = _throughput_fallback(runs)
        if note:
            notes.append(note)
    table = pareto_table(runs, performance, best) if runs is not None else pd.DataFrame()
    tasks = sorted(table.task.unique()) if len(table) else ["(no runs)"]
    fig, axes = plt.subplots(len(tasks), 2, figsize=(14, 4.6 * len(tasks) + 0.6), squeeze=False)
    for row, task in enumerate(tasks):
        sub = table[table.task == task].reset_index(drop=True) if len(table) else table
        for col, (axis, (column, p10, p90, label, scale_by)) in enumerate(AXES.items()):
            ax = axes[row, col]
            if sub.empty or not _panel(ax, data, f"{task}:{axis}", sub, column, (p10, p90),
                                       scale_by):
                what = "no successful runs" if sub.empty else f"no {axis} measurements"
                style.empty(ax, what)
                continue
            if axis == "compute":
                ax.set_xscale("log")
            ax.set_xlabel(label)
            ylabel = ("final train loss / tuned Adam's" if performance == NORMALISED
                      else "final eval loss")
            ax.set_ylabel(f"{ylabel}\n(mean; bars: 95% bootstrap CI over seeds)")
            ax.set_title(f"{task}: performance against {axis}")
            ax.grid(alpha=0.3, which="both")
        legend = next((ax for ax in axes[row, ::-1] if ax.lines), None)
        if legend is not None:
            legend.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("Pareto fronts: performance against compute and memory "
                 "(circles hand-designed, triangles learned)")
    style.footnote(fig, style.hardware(runs), scale, notes)
    fig.tight_layout(rect=(0, 0.06 + 0.015 * len(notes), 1, 0.97))
    return fig, data
