"""small_fc_lopt's faster design variants on both axes at once: each meta-trained variant's
final training loss over that of the exact design meta-trained on the same family, on the
held-out tasks (same tasks, same seeds)
against its update time over Adam's in the update benchmark (largest size, each design at its
fastest path). Variants benchmarked but not meta-trained are marked on the time axis only.

The loss ratio per task is the ratio of mean clipped final training losses over seeds (the
generalisation figure's scoring); a variant's point is the geometric mean over tasks, its bar
the range over tasks.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bench.figures import style
from bench.figures.generalisation import clipped_loss, is_tuned_adam
from bench.figures.variants import change_label, variants

TABLE_COLUMNS = ("change", "checkpoint", "family", "update_over_adam", "loss_over_exact", "low",
                 "high", "loss_over_adam", "tasks", "seeds")


def update_ratios(bench: pd.DataFrame | None) -> pd.DataFrame:
    """Per small_fc_lopt design (``change``): its update time over Adam's at the benchmark's
    largest size, the fastest of its execution paths."""
    columns = ["change", "update_over_adam", "num_params"]
    if bench is None or bench.empty or "update_over_adam" not in bench:
        return pd.DataFrame(columns=columns)
    rows = bench[(bench.optimizer_name == "small_fc_lopt") & bench.update_over_adam.notna()]
    rows = rows[rows.num_params == rows.num_params.max()] if len(rows) else rows
    changes = [change_label({k: v for k, v in (arm or {}).items() if v is not None})
               for arm in rows.arm]
    out = pd.DataFrame({"change": changes, "update_over_adam": rows.update_over_adam.to_numpy(),
                        "num_params": rows.num_params.to_numpy()})
    return out.groupby("change", as_index=False).agg(
        update_over_adam=("update_over_adam", "min"), num_params=("num_params", "first"))


def loss_ratios(runs: pd.DataFrame | None) -> pd.DataFrame:
    """Per family-trained small_fc_lopt arm of a generalisation table: the geometric mean over
    tasks of its mean clipped loss over that of the exact design trained on the same family
    (its range over tasks) and over tuned Adam's, on the tasks and seeds both ran."""
    if runs is None or runs.empty:
        return pd.DataFrame(columns=["change", "checkpoint", "family", "loss_over_exact",
                                     "low", "high", "loss_over_adam", "tasks", "seeds"])
    runs = runs[runs.status.isin(["ok", "diverged"])].copy()
    runs["clipped_loss"] = clipped_loss(runs)
    lopt = variants(runs)
    lopt = lopt[lopt.get("meta_trained_on", pd.Series(index=lopt.index, dtype=object))
                .fillna("standard").ne("standard")]
    lopt["checkpoint"] = lopt.opt_checkpoint.astype(str)
    adam = runs[is_tuned_adam(runs)]
    rows = []
    for (change, checkpoint, family), arm in lopt.groupby(
            ["change", "checkpoint", "meta_trained_on"], sort=True):
        exact = lopt[(lopt.change == "default") & (lopt.meta_trained_on == family)]
        if exact.checkpoint.nunique() > 1:
            raise ValueError(f"family {family!r}: more than one exact-design checkpoint "
                             f"({sorted(exact.checkpoint.unique())}) to compare variants with")
        ratios, over_adam, seeds = [], [], set()
        for task, group in arm.groupby("task"):
            shared = set(group.seed) & set(exact[exact.task == task].seed)
            base = exact[(exact.task == task) & exact.seed.isin(shared)]
            if not shared:
                continue
            mine = group[group.seed.isin(shared)].clipped_loss.mean()
            ratios.append(mine / base.clipped_loss.mean())
            tuned = adam[(adam.task == task) & adam.seed.isin(shared)].clipped_loss
            over_adam.append(mine / tuned.mean() if len(tuned) else np.nan)
            seeds |= shared
        if not ratios:
            continue
        logs = np.log(ratios)
        rows.append({"change": change, "checkpoint": checkpoint, "family": family,
                     "loss_over_exact": float(np.exp(logs.mean())),
                     "low": float(np.min(ratios)), "high": float(np.max(ratios)),
                     "loss_over_adam": float(np.exp(np.nanmean(np.log(over_adam)))),
                     "tasks": len(ratios), "seeds": len(seeds)})
    return pd.DataFrame(rows)


def tradeoff_table(runs: pd.DataFrame | None, bench: pd.DataFrame | None) -> pd.DataFrame:
    """Both axes per variant; a benchmarked design no checkpoint has is kept with no loss."""
    times, losses = update_ratios(bench), loss_ratios(runs)
    table = losses.merge(times[["change", "update_over_adam"]], on="change", how="left")
    untrained = times[~times.change.isin(table.change)].assign(checkpoint=None)
    table = pd.concat([table, untrained[["change", "checkpoint", "update_over_adam"]]],
                      ignore_index=True) if len(untrained) else table
    return table.reindex(columns=list(TABLE_COLUMNS))


def tradeoff_figure(runs: pd.DataFrame | None, bench: pd.DataFrame | None, scale: str,
                    notes: list[str] = ()) -> tuple[plt.Figure, style.PlotData]:
    """Loss over the exact design against update time over Adam's, one point per variant."""
    style.apply()
    data = style.PlotData()
    table = tradeoff_table(runs, bench)
    fig, ax = plt.subplots(figsize=(8, 5.2))
    trained = table[table.loss_over_exact.notna() & table.update_over_adam.notna()]
    if trained.empty:
        style.empty(ax, "no meta-trained small_fc_lopt variant with both a held-out loss "
                        "and an update benchmark row")
    colour = style.colour("small_fc_lopt")
    for row in trained.itertuples():
        name = f"{row.change} ({row.checkpoint})"
        ax.errorbar([row.update_over_adam], [row.loss_over_exact],
                    yerr=[[row.loss_over_exact - row.low], [row.high - row.loss_over_exact]],
                    color=colour, alpha=0.5, ls="none", capsize=3)
        (line,) = ax.plot([row.update_over_adam], [row.loss_over_exact], marker="o",
                          color=colour, ls="none",
                          mfc=colour if row.change == "default" else "white")
        style.tag(line, "tradeoff", name)
        data.add("tradeoff", name, "line", row.update_over_adam, row.loss_over_exact,
                 row.low, row.high, loss_over_adam=row.loss_over_adam, tasks=row.tasks,
                 seeds=row.seeds)
        ax.annotate(name, (row.update_over_adam, row.loss_over_exact), fontsize=7,
                    textcoords="offset points", xytext=(5, 4))
    for row in table[table.loss_over_exact.isna() & table.update_over_adam.notna()].itertuples():
        ax.axvline(row.update_over_adam, color="grey", ls=":", lw=0.8)
        ax.annotate(f"{row.change}: not meta-trained", (row.update_over_adam, 0.02),
                    xycoords=("data", "axes fraction"), rotation=90, fontsize=7, color="grey")
        data.add("untrained", row.change, "table", row.update_over_adam, np.nan)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("update time / Adam's update time (update benchmark, largest size)")
    ax.set_ylabel("final training loss / the exact design's, same family\n(geometric mean "
                  "over held-out tasks)")
    ax.grid(alpha=0.3)
    fig.suptitle("small_fc_lopt's faster variants: what they save against what they lose")
    style.footnote(fig, style.hardware(bench), scale, list(notes))
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    return fig, data

