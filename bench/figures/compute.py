"""Figure 2, compute: each optimizer's step-time overhead relative to plain SGD and to Adam,
against batch size and against parameter count, with the spread over timing repeats; and the
update alone against parameter count from the update-cost benchmark (which includes the
learned optimizers). A sweep's own overhead and cost figures are drawn here too.

Ratios to SGD use the runner's side-by-side SGD step (``step_over_sgd_step``); ratios to Adam
divide by Adam's run on the same task arm. Spreads are the run's p10 and p90 step times over
the reference's median.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bench.analysis.stats import time_ratio
from bench.analysis.summary import optimizer_summary
from bench.figures import style

TIMED = "step_time"
TIMES = ("step_time_median_s", "step_time_p10_s", "step_time_p90_s", "sgd_step_time_median_s",
         "step_over_sgd_step")
UPDATE_TIMES = ("update_time_median_s", "update_time_p10_s", "update_time_p90_s")
# Step-time panels: (x column, column held at its most common value, x label).
STEP_PANELS = (("batch_size", "num_params", "batch size"),
               ("num_params", "batch_size", "parameters"))
CROSSOVER = 1.5


def overhead_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per ok timed run: step time over SGD's (side by side) and over Adam's (same task arm
    and seed), each with its p10-p90 spread."""
    runs = style.numeric(runs, TIMES)
    ok = runs[(runs.status == "ok") & runs.step_time_median_s.notna()].copy()
    ok["over_sgd"] = ok.step_over_sgd_step
    ok["over_sgd_lo"] = ok.step_time_p10_s / ok.sgd_step_time_median_s
    ok["over_sgd_hi"] = ok.step_time_p90_s / ok.sgd_step_time_median_s
    adam = ok[style.names(ok) == "adam"]
    if adam.empty:
        ok[["over_adam", "over_adam_lo", "over_adam_hi"]] = np.nan
        return ok
    ratio = time_ratio(ok, adam, keys=("task", "seed"), time=TIMED)
    ratio = ratio.rename(columns={"ratio": "over_adam", "ratio_lo": "over_adam_lo",
                                  "ratio_hi": "over_adam_hi"})
    return ratio


def crossover_batch_sizes(table: pd.DataFrame, threshold: float = CROSSOVER) -> pd.Series:
    """Per optimizer, at the most common parameter count: the smallest batch size from which
    on its median step costs at most ``threshold`` plain-SGD steps; NaN where the largest
    batch timed still costs more. ``table`` is an ``overhead_table``."""
    if table.empty:
        return pd.Series(dtype=float, name="crossover_batch_size")
    held = table[table.num_params == table.num_params.mode().iloc[0]]
    out = {}
    for name, group in held.groupby("optimizer", sort=True):
        ratio = group.groupby("batch_size").over_sgd.median().sort_index()
        above = ratio.index[ratio.to_numpy() > threshold]
        later = ratio.index[ratio.index > above.max()] if len(above) else ratio.index
        out[name] = float(later.min()) if len(later) else np.nan
    return pd.Series(out, name="crossover_batch_size", dtype=float)


def crossover_note(table: pd.DataFrame | None, threshold: float = CROSSOVER) -> str | None:
    """The crossover batch sizes in words, for a caption; None without a batch-size axis."""
    if table is None or table.empty or table.batch_size.nunique() < 2:
        return None
    sizes = crossover_batch_sizes(table, threshold)
    largest = int(table.batch_size.max())
    parts = [f"{name} {int(b):,}" if np.isfinite(b) else f"{name} >{largest:,}"
             for name, b in sizes.items()]
    return (f"Crossover batch size (a step at most {threshold:g}x a plain-SGD step from there "
            f"on): {', '.join(parts)}.")


def update_table(bench: pd.DataFrame) -> pd.DataFrame:
    """Update-cost benchmark rows with the update time over SGD's and Adam's update."""
    bench = style.numeric(bench, UPDATE_TIMES)
    out = []
    for _, group in bench.groupby("num_params"):
        for name in ("sgd", "adam"):
            ref = group[style.names(group) == name].update_time_median_s
            base = float(ref.iloc[0]) if len(ref) else np.nan
            group = group.assign(**{f"over_{name}": group.update_time_median_s / base,
                                    f"over_{name}_lo": group.update_time_p10_s / base,
                                    f"over_{name}_hi": group.update_time_p90_s / base})
        out.append(group)
    return pd.concat(out, ignore_index=True) if out else bench


def _series(ax, data: style.PlotData, panel: str, table: pd.DataFrame, x: str, ref: str) -> None:
    shades = style.arm_colours(table)
    for name, group in table.groupby("optimizer", sort=True):
        stats = group.groupby(x).agg(mid=(f"over_{ref}", "median"),
                                     lo=(f"over_{ref}_lo", "median"),
                                     hi=(f"over_{ref}_hi", "median")).sort_index()
        if stats.mid.isna().all():
            continue
        xs, mid = stats.index.to_numpy(dtype=float), stats.mid.to_numpy()
        lo, hi = stats.lo.to_numpy(), stats.hi.to_numpy()
        bar = ax.errorbar(xs, mid, yerr=[mid - lo, hi - mid],
                          marker=style.marker(style.names(group).iloc[0]), color=shades[name],
                          capsize=3, label=name, lw=1.2, ms=5)
        style.tag(bar.lines[0], panel, name)
        data.add(panel, name, "line", xs, mid, lo, hi)


def _step_panels(axes, data: style.PlotData, table: pd.DataFrame | None, ref: str) -> None:
    """Step time over ``ref``'s against batch size and against parameter count; over SGD's
    against batch size, the crossover line and each optimizer's crossover batch size (CSV)."""
    for ax, (x, fixed, label) in zip(axes, STEP_PANELS):
        if table is None or table.empty or table[f"over_{ref}"].isna().all():
            what = "no overhead table" if table is None or table.empty else f"no {ref} runs"
            style.empty(ax, what)
            continue
        held = table[fixed].mode().iloc[0]
        _series(ax, data, f"step_over_{ref}_vs_{x}", table[table[fixed] == held], x, ref)
        if ref == "sgd" and x == "batch_size":
            ax.axhline(CROSSOVER, color="grey", lw=0.8, ls=":")
            for name, size in crossover_batch_sizes(table).items():
                data.add("crossover_batch_size", name, "table", CROSSOVER, size)
        ax.set_xlabel(f"{label} ({fixed.replace('_', ' ')} held at {held:,})")
        ax.set_ylabel(f"step time / {ref.upper() if ref == 'sgd' else 'Adam'} step time")
        ax.set_yscale("log")  # learned optimizers' overheads run to tens of steps
        ax.set_title(f"training step over {ref}'s, against {label}")


def _finish(fig: plt.Figure, axes, title: str, hardware: str, scale: str,
            notes: list[str]) -> None:
    for ax in axes.flat:
        if ax.lines:
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.set_xscale("log")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    style.footnote(fig, hardware, scale, list(notes))
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))


def compute_figure(overhead: pd.DataFrame | None, bench: pd.DataFrame | None,
                   scale: str, notes: list[str] = ()) -> tuple[plt.Figure, style.PlotData]:
    """Rows: relative to SGD, relative to Adam. Columns: step time against batch size (at the
    most common parameter count), against parameter count (at the most common batch size),
    and the update alone against parameter count (benchmark)."""
    style.apply()
    data, notes = style.PlotData(), list(notes)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), squeeze=False)
    overhead, bench = style.one_machine(overhead, notes), style.one_machine(bench, notes)
    table = overhead_table(overhead) if overhead is not None else None
    updates = update_table(bench) if bench is not None else None
    for row, ref in enumerate(("sgd", "adam")):
        _step_panels(axes[row, :2], data, table, ref)
        ax = axes[row, 2]
        if updates is None or updates.empty:
            style.empty(ax, "no update-cost table")
        else:
            _series(ax, data, f"update_over_{ref}_vs_num_params", updates, "num_params", ref)
            ax.set_xlabel("parameters (wide linear model)")
            ax.set_ylabel(f"update time / {ref}'s update time")
            ax.set_title(f"optimizer update alone over {ref}'s (benchmark)")
            ax.set_yscale("log")
    steps_on, updates_on = style.hardware(overhead), style.hardware(bench)
    if style.UNKNOWN_HARDWARE in (steps_on, updates_on) or steps_on == updates_on:
        machines = style.hardware(overhead, bench)  # one table drawn, or one machine
    else:
        machines = (f"{steps_on} (steps: left and middle columns); {updates_on} (update "
                    "benchmark: right column)")
    if (note := crossover_note(table)) is not None:
        notes.append(note)
    _finish(fig, axes, "Compute: step-time overhead relative to SGD and to Adam (median; bars: "
            "p10-p90 over timing repeats)", machines, scale, notes)
    return fig, data


def overhead_figure(runs: pd.DataFrame, scale: str, notes: list[str] = ()
                    ) -> tuple[plt.Figure, style.PlotData]:
    """A sweep's step-time overhead: over SGD's and over Adam's step, against batch size and
    against parameter count (the left two columns of the compute figure)."""
    style.apply()
    data, notes = style.PlotData(), list(notes)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5), squeeze=False)
    runs = style.one_machine(runs, notes)
    table = overhead_table(runs)
    for row, ref in enumerate(("sgd", "adam")):
        _step_panels(axes[row], data, table, ref)
    if (note := crossover_note(table)) is not None:
        notes.append(note)
    _finish(fig, axes, "Step-time overhead relative to SGD and to Adam (median; bars: p10-p90 "
            "over timing repeats)", style.hardware(runs), scale, notes)
    return fig, data


def costs_figure(runs: pd.DataFrame, scale: str, notes: list[str] = ()
                 ) -> tuple[plt.Figure, style.PlotData]:
    """Per optimizer arm: step time over a plain-SGD step and optimizer-state floats per
    parameter, as bars; for timing-only sweeps such as a design space."""
    style.apply()
    data = style.PlotData()
    table = optimizer_summary(runs, by=("task", "optimizer"))
    table = style.with_facts(table[table.ok > 0].reset_index(drop=True), runs)
    shades = style.arm_colours(table)
    labels = [f"{o} [{t}]" if table.task.nunique() > 1 else o
              for t, o in zip(table.task, table.optimizer)]
    fig, axes = plt.subplots(1, 2, figsize=(12, max(3.0, 0.32 * len(table) + 1.2)), sharey=True)
    colours = [shades[o] for o in table.optimizer]
    style.bars(axes[0], labels, table.step_over_sgd_step, "step_over_sgd", "step", data,
               colours=colours)
    style.bars(axes[1], labels, table.opt_state_floats_per_param, "state", "floats_per_param",
               data, colours=colours)
    axes[0].axvline(1.0, color="grey", lw=0.8, ls="--")
    axes[0].set_xlabel("step time / plain SGD step time (median)")
    axes[1].set_xlabel("optimizer state (floats per parameter)")
    for ax in axes:
        ax.grid(alpha=0.3, axis="x")
    axes[0].invert_yaxis()
    fig.suptitle("Compute and memory per optimizer")
    style.footnote(fig, style.hardware(runs), scale, list(notes))
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    return fig, data
