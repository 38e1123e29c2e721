"""Figure 5, the Pareto fronts: performance against step time and against optimizer-state
memory, hand-designed and learned optimizers, the front drawn, bars over seeds.

Performance is the final training loss (mean of the last 10% of steps) over tuned Adam's at
the same step (``loss_over_adam`` from ``bench.normalise``: the lower envelope of Adam's
learning-rate sweep) where that module and its reference table exist; otherwise the raw final
evaluation loss, which the figure says. Where a table holds several learning rates of one
optimizer, each optimizer is shown at its best (lowest mean loss over seeds) per task.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from bench.figures import style
from bench.stats import pareto_front, seed_summary

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
    try:
        module = importlib.import_module("bench.normalise")
    except ImportError:
        return runs, RAW, ("Performance is raw final eval loss: bench.normalise (scores "
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
    ok = runs[(runs.status == "ok") & runs[performance].notna()].copy()
    ok["base"] = ok.optimizer.map(style.base_name)
    means = ok.groupby(["task", "base", "optimizer"])[performance].mean().reset_index()
    best = means.loc[means.groupby(["task", "base"])[performance].idxmin(), "optimizer"]
    return ok[ok.optimizer.isin(set(best))]


def pareto_table(runs: pd.DataFrame, performance: str) -> pd.DataFrame:
    """Per task and optimizer: performance over seeds (bootstrap interval) and the costs."""
    chosen = best_arms(runs, performance)
    table = seed_summary(chosen, performance)
    costs = chosen.groupby(["task", "optimizer"]).agg(
        step_time_median_s=("step_time_median_s", "median"),
        step_time_p10_s=("step_time_p10_s", "median"),
        step_time_p90_s=("step_time_p90_s", "median"),
        opt_state_floats_per_param=("opt_state_floats_per_param", "mean"))
    return table.join(costs, on=["task", "optimizer"])


def pareto_figure(runs: pd.DataFrame | None, curves: pd.DataFrame | None, scale: str,
                  notes: list[str] = ()) -> tuple[plt.Figure, style.PlotData]:
    """One row per task; columns: performance against compute and against memory."""
    style.apply()
    data = style.PlotData()
    notes = list(notes)
    performance = RAW
    if runs is not None:
        runs, performance, note = normalise(runs, curves)
        if note:
            notes.append(note)
    table = pareto_table(runs, performance) if runs is not None else pd.DataFrame()
    tasks = sorted(table.task.unique()) if len(table) else ["(no runs)"]
    fig, axes = plt.subplots(len(tasks), 2, figsize=(14, 4.6 * len(tasks) + 0.6), squeeze=False)
    for row, task in enumerate(tasks):
        sub = table[table.task == task].reset_index(drop=True) if len(table) else table
        for col, (axis, (column, p10, p90, label, scale_by)) in enumerate(AXES.items()):
            ax = axes[row, col]
            if sub.empty:
                ax.text(0.5, 0.5, "no successful runs", ha="center", transform=ax.transAxes)
                continue
            x = sub[column].to_numpy(float) * scale_by
            y = sub["mean"].to_numpy()
            panel = f"{task}:{axis}"
            for i, name in enumerate(sub.optimizer):
                xerr = None
                if p10:
                    xerr = [[x[i] - sub[p10].iloc[i] * scale_by],
                            [sub[p90].iloc[i] * scale_by - x[i]]]
                bar = ax.errorbar([x[i]], [y[i]], yerr=[[y[i] - sub.ci_lo.iloc[i]],
                                                        [sub.ci_hi.iloc[i] - y[i]]],
                                  xerr=xerr, fmt=style.marker(name), color=style.colour(name),
                                  ms=7, capsize=3, label=f"{name} ({sub.seeds.iloc[i]} seeds)")
                style.tag(bar.lines[0], panel, name)
                data.add(panel, name, "line", x[i], y[i], sub.ci_lo.iloc[i], sub.ci_hi.iloc[i])
                ax.annotate(name, (x[i], y[i]), textcoords="offset points", xytext=(5, 4),
                            fontsize=7)
            front = pareto_front(x, y)
            (line,) = ax.step(x[front], y[front], where="post", color="black", lw=1.2,
                              alpha=0.6, label="Pareto front")
            style.tag(line, panel, "pareto_front")
            data.add(panel, "pareto_front", "line", x[front], y[front])
            if axis == "compute":
                ax.set_xscale("log")
            ax.set_xlabel(label)
            ylabel = ("final train loss / tuned Adam's" if performance == NORMALISED
                      else "final eval loss")
            ax.set_ylabel(f"{ylabel}\n(mean; bars: 95% bootstrap CI over seeds)")
            ax.set_title(f"{task}: performance against {axis}")
            ax.grid(alpha=0.3, which="both")
        axes[row, 1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("Pareto fronts: performance against compute and memory "
                 "(circles hand-designed, triangles learned)")
    style.footnote(fig, style.hardware(runs), scale, notes)
    fig.tight_layout(rect=(0, 0.06 + 0.015 * len(notes), 1, 0.97))
    return fig, data
