"""Figure 3, the per-parameter network's cost: small_fc_lopt's step-time overhead (over a
plain-SGD step timed beside it) against hidden size and layers, against the number of input
features, and for the stacked and unrolled execution paths."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from bench.figures import style
from bench.figures.variants import variants

COST = "step_over_sgd_step"
NETWORK = {"hidden_size", "hidden_layers"}  # the settings that size the per-parameter network


def lopt_cost_figure(runs: pd.DataFrame | None, scale: str, notes: list[str] = ()
                     ) -> tuple[plt.Figure, style.PlotData]:
    """Overhead against network size, against input features, and per execution path."""
    style.apply()
    data = style.PlotData()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    table = None
    if runs is not None:
        ok = runs[(runs.status == "ok") & runs[COST].notna()]
        table = variants(ok)
        table["network"] = [set(keys) <= NETWORK for keys in table.changed]
        table["features"] = [not set(keys) & NETWORK for keys in table.changed]
    if table is None or table.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no small_fc_lopt design table", ha="center",
                    transform=ax.transAxes)
    else:
        table = table.groupby(["change", "path_setting", "exec_path", "num_inputs"],
                              as_index=False).agg(
            cost=(COST, "median"), hidden_size=("opt_hidden_size", "first"),
            hidden_layers=("opt_hidden_layers", "first"), network=("network", "first"),
            features=("features", "first"))
        colour = style.colour("small_fc_lopt")
        # (a) hidden size, per number of hidden layers (all features on, default path)
        ax = axes[0]
        net = table[table.network & (table.path_setting != "stacked")]
        for layers, group in net.groupby("hidden_layers"):
            group = group.sort_values("hidden_size")
            name = f"{int(layers)} hidden layers"
            (line,) = ax.plot(group.hidden_size, group.cost, marker="^", color=colour,
                              ls="-" if layers == 2 else ":", label=name)
            style.tag(line, "vs_hidden_size", name)
            data.add("vs_hidden_size", name, "line", group.hidden_size.to_numpy(float),
                     group.cost.to_numpy(), exec_path=group.exec_path.tolist())
            for x, y, path in zip(group.hidden_size, group.cost, group.exec_path):
                if path == "stacked":
                    ax.annotate("stacked", (x, y), textcoords="offset points", xytext=(4, -10),
                                fontsize=7)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("hidden size of the per-parameter network")
        ax.set_title("overhead against network size")
        # (b) number of input features: the default and feature groups removed
        ax = axes[1]
        feats = table[table.features & (table.path_setting != "stacked")]
        feats = feats.sort_values("num_inputs")
        (line,) = ax.plot(feats.num_inputs, feats.cost, marker="^", ls="none", color=colour)
        style.tag(line, "vs_num_inputs", "small_fc_lopt")
        data.add("vs_num_inputs", "small_fc_lopt", "line", feats.num_inputs.to_numpy(float),
                 feats.cost.to_numpy(), change=feats.change.tolist())
        for x, y, change in zip(feats.num_inputs, feats.cost, feats.change):
            ax.annotate(change, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.set_xlabel("input features per parameter")
        ax.set_title("overhead against input features")
        # (c) execution paths at the default design
        ax = axes[2]
        paths = table[(table.change == "default")].sort_values("exec_path")
        labels = [f"small_fc_lopt {p}" for p in paths.exec_path]
        style.bars(ax, labels, paths.cost.to_numpy(), "paths", "small_fc_lopt", data,
                   horizontal=False, colours=colour)
        ax.set_title("stacked vs unrolled execution, default design")
        for ax in axes:
            ax.set_ylabel("step time / plain SGD step time")
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.grid(alpha=0.3)
        if axes[0].lines:
            axes[0].legend()
    fig.suptitle("The per-parameter network's cost (small_fc_lopt, median over timing repeats)")
    style.footnote(fig, style.hardware(runs), scale, list(notes))
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    return fig, data
