"""Generalisation to held-out tasks (``make sweep SWEEP=generalisation``): per task, each
learned optimizer's final training loss over tuned Adam's, with 95% bootstrap intervals over
seeds, specialists and family-trained checkpoints side by side; and each one's speedup over
Adam (the steps tuned Adam needs to reach its loss, over its steps) where the tuned-Adam
reference has the task.

``python -m bench.figures.generalisation results/generalisation --ship`` redraws a sweep's
figure and ships its runs, scored from their full curves, as the reference table
results/reference/paper/generalisation_runs.parquet.

Losses are clipped as the scores are (1.5 ln(classes) for classifiers; a run that diverged
counts as the clip, or as its first loss for other losses), so a blow-up is a bad score, not a
missing one.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bench.analysis import normalise
from bench.analysis.normalise import loss_clip
from bench.analysis.stats import bootstrap_mean_ci, bootstrap_ratio_ci
from bench.analysis.summary import newest_code_tables, newest_per_seed
from bench.figures import style
from bench.records.files import read_parquet

SHIPPED = Path("results/reference/paper/generalisation_runs.parquet")

TABLE_COLUMNS = ("task", "optimizer", "meta_trained_on", "seeds", "loss", "adam_loss",
                 "loss_over_adam", "low", "high", "speedup_over_adam", "speedup_low",
                 "speedup_high")


def clipped_loss(runs: pd.DataFrame) -> pd.Series:
    """Final training loss, at most the task's clip; a non-finite one counts as the clip (or
    the run's first loss where there is no clip)."""
    clip = runs["num_classes"].map(loss_clip) if "num_classes" in runs else np.inf
    fallback = np.where(np.isfinite(clip), clip, runs.get("first_train_loss", np.nan))
    final = runs["final_train_loss"].astype(float)
    return pd.Series(np.where(np.isfinite(final), np.minimum(final, clip), fallback),
                     index=runs.index)


def is_tuned_adam(runs: pd.DataFrame) -> pd.Series:
    """Adam's runs at a learning rate read from a table of tuned rates (``sweep.tuned``)."""
    if "tuned_from" not in runs:
        return pd.Series(False, index=runs.index)
    return runs["tuned_from"].notna() & (runs["optimizer_name"] == "adam")


def generalisation_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per task and learned optimizer: its mean clipped final training loss, tuned
    Adam's on the same task, their ratio with a 95% bootstrap interval, and the mean speedup
    over Adam (where ``runs`` carries ``speedup_over_adam``)."""
    runs = newest_per_seed(runs[runs["status"].isin(["ok", "diverged"])]).copy()
    runs["clipped_loss"] = clipped_loss(runs)
    rows = []
    for task, group in runs.groupby("task", sort=True):
        adam = group[is_tuned_adam(group)]
        if adam.empty:
            continue
        adam_losses = adam["clipped_loss"].to_numpy()
        for label, arm in group[~is_tuned_adam(group)].groupby("optimizer", sort=True):
            losses = arm["clipped_loss"].to_numpy()
            low, high = bootstrap_ratio_ci(losses, adam_losses)
            speedups = arm.get("speedup_over_adam", pd.Series(dtype=float)).to_numpy(float)
            s_low, s_high = bootstrap_mean_ci(speedups)
            trained = arm.get("meta_trained_on", pd.Series([None])).dropna()
            rows.append(dict(zip(TABLE_COLUMNS, (
                task, label, trained.iloc[0] if len(trained) else None, len(arm),
                float(np.mean(losses)), float(np.mean(adam_losses)),
                float(np.mean(losses) / np.mean(adam_losses)), low, high,
                float(np.nanmean(speedups)) if np.isfinite(speedups).any() else np.nan,
                s_low, s_high))))
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


LEGEND_ROW_INCHES = 0.22
FOOTNOTE_INCHES = 0.4


def generalisation_figure(table: pd.DataFrame, scale: str, hardware: str,
                          notes: list[str] = ()) -> tuple[plt.Figure, style.PlotData]:
    """Left: loss over tuned Adam per held-out task (log scale, 1 = Adam); right: speedup
    over Adam. One marker colour per checkpoint; hollow markers for specialists."""
    style.apply()
    data = style.PlotData()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), sharey=False)
    if table.empty:
        for ax in (left, right):
            style.empty(ax, "no learned optimizer with a tuned Adam on the same task")
        style.footnote(fig, hardware, scale, list(notes))
        return fig, data
    tasks = sorted(table["task"].unique())
    labels = sorted(table["optimizer"].unique())
    width = 0.8 / max(len(labels), 1)
    for i, label in enumerate(labels):
        rows = table[table["optimizer"] == label].set_index("task").reindex(tasks)
        x = np.arange(len(tasks)) - 0.4 + width * (i + 0.5)
        family = rows["meta_trained_on"].dropna()
        specialist = family.empty or family.iloc[0] == "standard"
        colour = plt.get_cmap("tab10")(i % 10)
        face = "none" if specialist else colour
        name = f"{label} ({'specialist' if specialist else 'family ' + family.iloc[0]})"
        for ax, value, low, high, panel in (
                (left, "loss_over_adam", "low", "high", "loss_over_adam"),
                (right, "speedup_over_adam", "speedup_low", "speedup_high", "speedup")):
            y, lo, hi = (rows[c].to_numpy(float) for c in (value, low, high))
            err = np.vstack([y - lo, hi - y])
            line = ax.errorbar(x, y, yerr=np.where(np.isfinite(err), err, 0), fmt="o",
                               color=colour, mfc=face, ms=7, capsize=3, label=name)
            style.tag(line.lines[0], panel, label)
            data.add(panel, label, "point", tasks, y, lo, hi)
    for ax, title in ((left, "final training loss over tuned Adam's"),
                      (right, "speedup over tuned Adam")):
        ax.axhline(1.0, color="black", lw=1, ls="--")
        ax.set_xticks(np.arange(len(tasks)), tasks, rotation=30, ha="right")
        ax.set_yscale("log")
        ax.set_title(title)
    left.set_ylabel("ratio (below 1: better than Adam)")
    right.set_ylabel("Adam's steps to the same loss / steps (above 1: faster)")
    # Below both panels, two columns: the checkpoints' labels are long and many.
    handles, names = left.get_legend_handles_labels()
    rows = math.ceil(len(names) / 2)
    height = 4.8 + LEGEND_ROW_INCHES * rows
    fig.set_size_inches(12, height)
    top = (FOOTNOTE_INCHES + 0.2 * len(notes) + LEGEND_ROW_INCHES * rows + 0.1) / height
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, top), ncol=2,
               fontsize=8, frameon=False)
    style.footnote(fig, hardware, scale, list(notes))
    fig.tight_layout(rect=(0, top, 1, 1))
    return fig, data


def draw(runs: pd.DataFrame, curve_rows: pd.DataFrame | None, folder: Path,
         scale: str) -> list[Path]:
    """The generalisation figure and its table (generalisation_table.csv) into ``folder``,
    with speedups over Adam where the tuned-Adam reference and the curves allow."""
    notes = []
    if curve_rows is None and "speedup_over_adam" in runs:
        scored = runs  # a reference table, scored from its full curves when it was made
    else:
        try:
            scored = normalise.add_scores(runs, curve_rows, normalise.load_reference())
        except (FileNotFoundError, TypeError) as exc:
            scored, notes = runs, [f"No speedups over Adam: {exc}"]
    table = generalisation_table(scored)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "generalisation_table.csv", index=False)
    fig, data = generalisation_figure(table, scale, style.hardware(runs), notes)
    return [folder / "generalisation_table.csv",
            *style.save_figure(fig, folder, "generalisation", data)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a generalisation sweep's results folder")
    parser.add_argument("--ship", action="store_true", help=f"also write {SHIPPED}")
    args = parser.parse_args(argv)
    runs, curves, earlier = newest_code_tables(read_parquet(args.folder / "runs.parquet"),
                                               read_parquet(args.folder / "curves.parquet"))
    if earlier:
        print(f"left out {earlier} runs of earlier code", file=sys.stderr)
    for path in draw(runs, curves, args.folder / "figures", f"{runs.task.nunique()} tasks"):
        print(path)
    if args.ship:
        scored = normalise.add_scores(newest_per_seed(runs), curves, normalise.load_reference())
        SHIPPED.parent.mkdir(parents=True, exist_ok=True)
        scored.to_parquet(SHIPPED, index=False)
        print(f"shipped {len(scored)} scored runs to {SHIPPED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
