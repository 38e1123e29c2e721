"""Figure 2, compute: each optimizer's step-time overhead relative to plain SGD and to Adam,
against batch size and against parameter count, with the spread over timing repeats; and the
update alone against parameter count from the update-cost benchmark (which includes the
learned optimizers).

Ratios to SGD use the runner's side-by-side SGD step (``step_over_sgd_step``); ratios to Adam
divide by Adam's run on the same task arm. Spreads are the run's p10 and p90 step times over
the reference's median.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bench.figures import style
from bench.stats import time_ratio

TIMED = "step_time"


def overhead_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per ok timed run: step time over SGD's (side by side) and over Adam's (same task arm
    and seed), each with its p10-p90 spread."""
    ok = runs[(runs.status == "ok") & runs.step_time_median_s.notna()].copy()
    ok["over_sgd"] = ok.step_over_sgd_step
    ok["over_sgd_lo"] = ok.step_time_p10_s / ok.sgd_step_time_median_s
    ok["over_sgd_hi"] = ok.step_time_p90_s / ok.sgd_step_time_median_s
    adam = ok[ok.optimizer.map(style.base_name) == "adam"]
    if adam.empty:
        ok[["over_adam", "over_adam_lo", "over_adam_hi"]] = np.nan
        return ok
    ratio = time_ratio(ok, adam, keys=("task", "seed"), time=TIMED)
    ratio = ratio.rename(columns={"ratio": "over_adam", "ratio_lo": "over_adam_lo",
                                  "ratio_hi": "over_adam_hi"})
    return ratio


def update_table(bench: pd.DataFrame) -> pd.DataFrame:
    """Update-cost benchmark rows with the update time over SGD's and Adam's update."""
    out = []
    for _, group in bench.groupby("num_params"):
        sgd = group[group.optimizer == "sgd"].update_time_median_s
        adam = group[group.optimizer == "adam"].update_time_median_s
        for ref, name in ((sgd, "sgd"), (adam, "adam")):
            base = float(ref.iloc[0]) if len(ref) else np.nan
            group = group.assign(**{f"over_{name}": group.update_time_median_s / base,
                                    f"over_{name}_lo": group.update_time_p10_s / base,
                                    f"over_{name}_hi": group.update_time_p90_s / base})
        out.append(group)
    return pd.concat(out, ignore_index=True) if out else bench


def _series(ax, data: style.PlotData, panel: str, table: pd.DataFrame, x: str, ref: str) -> None:
    for name, group in table.groupby("optimizer", sort=True):
        stats = group.groupby(x).agg(mid=(f"over_{ref}", "median"),
                                     lo=(f"over_{ref}_lo", "median"),
                                     hi=(f"over_{ref}_hi", "median")).sort_index()
        if stats.mid.isna().all():
            continue
        xs, mid = stats.index.to_numpy(dtype=float), stats.mid.to_numpy()
        bar = ax.errorbar(xs, mid, yerr=[mid - stats.lo, stats.hi - mid], marker=style.marker(
            name), color=style.colour(name), capsize=3, label=name, lw=1.2, ms=5)
        style.tag(bar.lines[0], panel, name)
        data.add(panel, name, "line", xs, mid, stats.lo.to_numpy(), stats.hi.to_numpy())


def compute_figure(overhead: pd.DataFrame | None, bench: pd.DataFrame | None,
                   scale: str, notes: list[str] = ()) -> tuple[plt.Figure, style.PlotData]:
    """Rows: relative to SGD, relative to Adam. Columns: step time against batch size (at the
    most common parameter count), against parameter count (at the most common batch size),
    and the update alone against parameter count (benchmark)."""
    style.apply()
    data = style.PlotData()
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), squeeze=False)
    table = overhead_table(overhead) if overhead is not None else None
    updates = update_table(bench) if bench is not None else None
    for row, ref in enumerate(("sgd", "adam")):
        for col, (x, fixed, label) in enumerate((("batch_size", "num_params", "batch size"),
                                                  ("num_params", "batch_size", "parameters"))):
            ax = axes[row, col]
            if table is None or table.empty:
                ax.text(0.5, 0.5, "no overhead table", ha="center", transform=ax.transAxes)
                continue
            held = table[fixed].mode().iloc[0]
            _series(ax, data, f"step_over_{ref}_vs_{x}", table[table[fixed] == held], x, ref)
            ax.set_xlabel(f"{label} ({fixed.replace('_', ' ')} held at {held:,})")
            ax.set_ylabel(f"step time / {ref.upper() if ref == 'sgd' else 'Adam'} step time")
            ax.set_title(f"training step over {ref}'s, against {label}")
        ax = axes[row, 2]
        if updates is None or updates.empty:
            ax.text(0.5, 0.5, "no update-cost table", ha="center", transform=ax.transAxes)
        else:
            _series(ax, data, f"update_over_{ref}_vs_num_params", updates, "num_params", ref)
            ax.set_xlabel("parameters (wide linear model)")
            ax.set_ylabel(f"update time / {ref}'s update time")
            ax.set_title(f"optimizer update alone over {ref}'s (benchmark)")
            ax.set_yscale("log")
    for ax in axes.flat:
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both")
        if ax.lines:
            ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Compute: step-time overhead relative to SGD and to Adam "
                 "(median; bars: p10-p90 over timing repeats)")
    style.footnote(fig, style.hardware(overhead, bench), scale, list(notes))
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return fig, data
