"""Figure 4, feature ablations: small_fc_lopt's performance (and cost) when feature groups
(momentum timescales, second moment, factored features, parameter value, time features) or
network size are changed, each variant against the default design, mean over seeds with
bootstrap intervals.

Performance of learned optimizers means something only with meta-trained meta-parameters;
rows marked ``meta_trained=false`` are drawn with a warning on the figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from bench.analysis.summary import optimizer_summary
from bench.figures import style
from bench.figures.variants import variants

PERFORMANCE = "final_eval_loss"


def ablation_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per variant (``change``): loss over seeds with its interval, and median step time over
    SGD's (``cost``), from ``optimizer_summary``."""
    table = variants(runs)
    table = table[table.path_setting != "stacked"] if not table.empty else table
    summary = optimizer_summary(table, PERFORMANCE, by=("change",))
    summary = summary[summary.seeds > 0].rename(columns={"step_over_sgd_step": "cost"})
    return summary.sort_values("mean").reset_index(drop=True)


def ablation_figure(runs: pd.DataFrame | None, scale: str, notes: list[str] = ()
                    ) -> tuple[plt.Figure, style.PlotData]:
    """Loss of each variant (mean, bootstrap interval; hand-designed optimizers of the table as
    dashed lines) beside its cost."""
    style.apply()
    data = style.PlotData()
    notes = list(notes)
    table = None
    if runs is not None and PERFORMANCE in runs and runs[PERFORMANCE].notna().any():
        table = ablation_table(runs)
    n = 4 if table is None else len(table)
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.38 * n + 2.6), sharey=True)
    if table is None or table.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no trained small_fc_lopt variants", ha="center",
                    transform=ax.transAxes)
    else:
        labels = table.change.tolist()
        colour = style.colour("small_fc_lopt")
        ax = axes[0]
        ax.barh(labels, table["mean"], color=colour, alpha=0.35)
        (line,) = ax.plot(table["mean"], labels, ls="none", marker="^", color=colour)
        ax.errorbar(table["mean"], labels, xerr=[table["mean"] - table.ci_lo,
                                                 table.ci_hi - table["mean"]],
                    fmt="none", ecolor="black", capsize=3)
        style.tag(line, "loss", "small_fc_lopt")
        data.add("loss", "small_fc_lopt", "line", table["mean"].to_numpy(), range(len(table)),
                 table.ci_lo.to_numpy(), table.ci_hi.to_numpy(), change=labels,
                 seeds=table.seeds.tolist())
        learned = style.names(runs).map(style.is_learned)
        hand = runs[(runs.status == "ok") & ~learned]
        for label, group in hand.groupby("optimizer"):
            value = group[PERFORMANCE].mean()
            ax.axvline(value, color=style.colour(style.names(group).iloc[0]), ls="--", lw=1.2,
                       label=f"{label} ({group.seed.nunique()} seeds)")
        lo = min(table.ci_lo.min(), hand[PERFORMANCE].min() if len(hand) else table.ci_lo.min())
        ax.set_xlim(left=max(0.0, lo - 0.1 * abs(lo)))
        ax.set_xlabel(f"{PERFORMANCE} (mean over seeds; bars: 95% bootstrap CI)")
        ax.set_title("performance of each variant")
        if hand.size:
            ax.legend(fontsize=8, loc="lower right")
        style.bars(axes[1], labels, table.cost.to_numpy(), "cost", "small_fc_lopt", data,
                   colours=colour)
        axes[1].axvline(1.0, color="grey", lw=0.8, ls="--")
        axes[1].set_xlabel("step time / plain SGD step time (median)")
        axes[1].set_title("cost of each variant")
        axes[0].invert_yaxis()
        for ax in axes:
            ax.grid(alpha=0.3, axis="x")
        trained = runs.get("meta_trained")
        if trained is not None and not trained[learned].eq(True).all():
            notes.append("WARNING: untrained meta-parameters (meta_trained=false): these losses "
                         "say how each variant behaves before meta-training, not what the "
                         "feature is worth.")
    fig.suptitle("Feature ablations: small_fc_lopt with feature groups removed or resized")
    style.footnote(fig, style.hardware(runs), scale, notes)
    fig.tight_layout(rect=(0, 0.1, 1, 0.97))
    return fig, data
