"""Figure 6, loss curves: training loss (moving average) and evaluation loss of each
optimizer per task, mean over seeds with a 95% bootstrap band (whole seeds resampled)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bench.analysis.stats import bootstrap_mean_band
from bench.figures import style

MAX_POINTS = 200


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (shorter at the start), to read noisy per-batch losses."""
    if window <= 1 or len(values) == 0:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    starts = np.arange(1, len(values) + 1) - counts
    return (cumulative[1:] - cumulative[starts]) / counts


def curve_table(runs: pd.DataFrame, curves: pd.DataFrame, window: int = 50) -> pd.DataFrame:
    """Per task, split, optimizer and step: mean over seeds and the bootstrap band (training
    curves smoothed first; thinned to at most MAX_POINTS steps per curve), with the arms."""
    names = runs[runs.status == "ok"].set_index("run_id")[["task", "optimizer", "seed"]]
    joined = curves.join(names, on="run_id", how="inner")
    out = []
    for (task, split, name), group in joined.groupby(["task", "split", "optimizer"], sort=True):
        wide = group.pivot_table(index="step", columns="seed", values="loss").dropna()
        if wide.empty:
            continue
        values = wide.to_numpy(dtype=float)
        if split == "train":  # the window counts steps, whatever the curve's step spacing
            spacing = float(np.median(np.diff(wide.index))) if len(wide) > 1 else 1.0
            points = max(1, round(window / spacing))
            values = np.column_stack([moving_average(c, points) for c in values.T])
        keep = np.unique(np.linspace(0, len(values) - 1, min(MAX_POINTS, len(values))).astype(int))
        lo, hi = bootstrap_mean_band(values[keep])
        out.append(pd.DataFrame({"task": task, "split": split, "optimizer": name,
                                 "step": wide.index.to_numpy()[keep],
                                 "mean": values[keep].mean(axis=1), "lo": lo, "hi": hi,
                                 "seeds": values.shape[1]}))
    columns = ["task", "split", "optimizer", "step", "mean", "lo", "hi", "seeds"]
    table = pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=columns)
    return style.with_facts(table, runs)


def curves_figure(runs: pd.DataFrame | None, curves: pd.DataFrame | None, scale: str,
                  notes: list[str] = (), window: int = 50) -> tuple[plt.Figure, style.PlotData]:
    """One row per task; columns: training and evaluation loss, one line per optimizer arm."""
    style.apply()
    data = style.PlotData()
    table = curve_table(runs, curves, window) if runs is not None and curves is not None \
        else pd.DataFrame(columns=["task", "split", "optimizer"])
    tasks = sorted(table.task.unique()) or ["(no curves)"]
    fig, axes = plt.subplots(len(tasks), 2, figsize=(12, 4.4 * len(tasks) + 0.6), squeeze=False)
    for row, task in enumerate(tasks):
        for col, split in enumerate(("train", "eval")):
            ax = axes[row, col]
            part = table[(table.task == task) & (table.split == split)]
            colours = style.arm_colours(part)
            for name, group in part.groupby("optimizer", sort=True):
                c = colours[name]
                shape = style.marker(group.optimizer_name.iloc[0]) if split == "eval" else None
                (line,) = ax.plot(group.step, group["mean"], color=c, lw=1.3, marker=shape,
                                  label=f"{name} ({group.seeds.iloc[0]} seeds)", ms=3)
                ax.fill_between(group.step, group.lo, group.hi, color=c, alpha=0.2, lw=0)
                panel = f"{task}:{split}"
                style.tag(line, panel, name)
                data.add(panel, name, "line", group.step.to_numpy(float), group["mean"],
                         group.lo, group.hi)
            ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.set_ylabel(f"train loss ({window}-step moving average)" if split == "train"
                          else "eval loss")
            ax.set_title(f"{task}: {split} loss (mean over seeds; band: 95% bootstrap CI)")
            ax.grid(alpha=0.3, which="both")
            if len(part):
                ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Loss curves per task")
    style.footnote(fig, style.hardware(runs), scale, list(notes))
    fig.tight_layout(rect=(0, 0.06 + 0.015 * len(notes), 1, 0.97))
    return fig, data
