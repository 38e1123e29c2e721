"""A sweep's own figures, drawn into results/NAME/figures/ after every sweep: Pareto scatters
of cost against performance, loss curves, overhead and per-optimizer cost bars.

Every function takes the tables (never reruns anything) and returns a matplotlib Figure; the
figures state the hardware they were measured on. ``python -m bench.plots results/NAME``
redraws a sweep's figures from its tables. The paper's figure set, drawn across sweeps, is
``bench.figures`` (``make figures``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.figures import style  # noqa: E402
from bench.figures.curves import moving_average  # noqa: E402
from bench.stats import pareto_front  # noqa: E402

PERFORMANCE = "final_eval_loss"
# Panel: (summary column, its p10 / p90 columns or None, axis label, scale to the label's unit).
AXES = {
    "memory": ("floats_per_param", None, "optimizer state (floats per parameter)", 1.0),
    "compute": ("step_time_s", ("step_time_p10_s", "step_time_p90_s"),
                "training step time, median (ms; bars: p10-p90)", 1e3),
}


def summarize_optimizers(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task and optimizer: mean and spread over seeds of cost and performance (ok runs)."""
    ok = runs[runs.status == "ok"]
    grouped = ok.groupby(["task", "optimizer"])
    table = grouped.agg(
        seeds=("seed", "nunique"),
        loss_mean=(PERFORMANCE, "mean"),
        loss_min=(PERFORMANCE, "min"),
        loss_max=(PERFORMANCE, "max"),
        floats_per_param=("opt_state_floats_per_param", "mean"),
        step_time_s=("step_time_median_s", "median"),
        step_time_p10_s=("step_time_p10_s", "median"),
        step_time_p90_s=("step_time_p90_s", "median"),
        update_time_s=("update_time_median_s", "median"),
    )
    return table.reset_index()


def _hardware(runs: pd.DataFrame) -> str:
    kinds = runs.get("device_kind", pd.Series(dtype=str)).dropna().unique()
    cpu = runs.get("cpu_model", pd.Series(dtype=str)).dropna().unique()
    cores = runs.get("cpu_count", pd.Series(dtype=float)).dropna().unique()
    parts = [", ".join(map(str, kinds)) or "unknown device"]
    if len(cpu) and "cpu" in parts[0].lower():
        parts.append(f"{cpu[0]}, {int(cores[0]) if len(cores) else '?'} cores")
    return "; ".join(parts)


def pareto_figure(runs: pd.DataFrame) -> plt.Figure:
    """Performance against memory and against compute, one row of panels per task."""
    table = summarize_optimizers(runs)
    tasks = sorted(table.task.unique()) or ["(no ok runs)"]
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 4.2 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        sub = table[table.task == task].reset_index(drop=True)
        for col, (axis, (column, spread, label, scale)) in enumerate(AXES.items()):
            ax = axes[row, col]
            if sub.empty:
                ax.text(0.5, 0.5, "no successful runs", ha="center", transform=ax.transAxes)
                continue
            x = sub[column].to_numpy() * scale
            y = sub.loss_mean.to_numpy()
            yerr = np.vstack([y - sub.loss_min, sub.loss_max - y])
            xerr = None
            if spread:
                xerr = np.vstack([x - sub[spread[0]] * scale, sub[spread[1]] * scale - x])
            ax.errorbar(x, y, yerr=yerr, xerr=xerr, fmt="none", ecolor="grey", capsize=3,
                        alpha=0.85)
            ax.scatter(x, y, c=[style.colour(n) for n in sub.optimizer], s=40, zorder=3)
            for xi, yi, name in zip(x, y, sub.optimizer):
                ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(5, 4), fontsize=8)
            front = pareto_front(x, y)
            ax.step(x[front], y[front], where="post", color="crimson", lw=1.5,
                    label="Pareto front")
            ax.set_xlabel(label)
            ax.set_ylabel(f"{PERFORMANCE} (mean over seeds; bars: min-max)")
            ax.set_title(f"{task}: {axis} vs performance")
            ax.grid(alpha=0.3)
            ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"Cost vs performance; measured on {_hardware(runs)}", fontsize=10)
    fig.tight_layout()
    return fig


def loss_curves_figure(runs: pd.DataFrame, curves: pd.DataFrame, window: int = 50) -> plt.Figure:
    """Training loss (smoothed) and evaluation loss per optimizer: mean over seeds, min-max band."""
    names = runs.set_index("run_id")[["task", "optimizer", "seed"]]
    data = curves.join(names, on="run_id")
    tasks = sorted(data.task.dropna().unique()) or ["(no curves)"]
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 4.2 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        sub = data[data.task == task]
        for col, split in enumerate(("train", "eval")):
            ax = axes[row, col]
            part = sub[sub.split == split]
            colours = style.arm_colours(part.optimizer.unique())
            for name, group in part.groupby("optimizer"):
                wide = group.pivot_table(index="step", columns="seed", values="loss")
                if split == "train":
                    wide = wide.apply(lambda s: pd.Series(moving_average(s.to_numpy(), window),
                                                          index=s.index))
                color = colours[name]
                ax.plot(wide.index, wide.mean(axis=1), color=color, label=name, lw=1.3,
                        marker="o" if split == "eval" else None, ms=3)
                ax.fill_between(wide.index, wide.min(axis=1), wide.max(axis=1), color=color,
                                alpha=0.2, lw=0)
            ax.set_yscale("log")
            ax.set_xlabel("step")
            what = f"train loss ({window}-step moving average)" if split == "train" else "eval loss"
            ax.set_ylabel(what)
            ax.set_title(f"{task}: {split} (mean over seeds; band: min-max)")
            ax.grid(alpha=0.3, which="both")
            if len(part):
                ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"Loss curves; measured on {_hardware(runs)}", fontsize=10)
    fig.tight_layout()
    return fig


def overhead_figure(runs: pd.DataFrame) -> plt.Figure:
    """Step time over a plain-SGD step (measured side by side) against batch size, at the most
    common parameter count, and against parameter count, at the most common batch size."""
    ok = runs[(runs.status == "ok") & runs.step_over_sgd_step.notna()]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), squeeze=False)
    panels = (("batch_size", "num_params", "batch size"),
              ("num_params", "batch_size", "parameters"))
    for ax, (x, fixed, label) in zip(axes[0], panels):
        if ok.empty:
            continue
        held = ok[fixed].mode().iloc[0]
        sub = ok[ok[fixed] == held]
        for name, group in sub.groupby("optimizer"):
            stats = group.groupby(x).step_over_sgd_step.agg(["median", "min", "max"])
            mid, low, high = (stats[c].to_numpy() for c in ("median", "min", "max"))
            ax.errorbar(stats.index.to_numpy(), mid, yerr=[mid - low, high - mid],
                        marker=style.marker(name), color=style.colour(name), capsize=3,
                        label=name)
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel(f"{label} ({fixed.replace('_', ' ')} held at {held:,})")
        ax.set_ylabel("step time / plain SGD step time")
        ax.set_title(f"optimizer overhead against {label}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"Step-time overhead; measured on {_hardware(runs)}", fontsize=10)
    fig.tight_layout()
    return fig


def costs_figure(runs: pd.DataFrame) -> plt.Figure:
    """Per optimizer (or variant): step time over a plain-SGD step and optimizer-state floats
    per parameter, as horizontal bars; for timing-only sweeps such as a design space."""
    ok = runs[runs.status == "ok"]
    table = ok.groupby(["task", "optimizer"]).agg(
        overhead=("step_over_sgd_step", "median"),
        state=("opt_state_floats_per_param", "mean")).reset_index()
    labels = [f"{o} [{t}]" if table.task.nunique() > 1 else o
              for t, o in zip(table.task, table.optimizer)]
    height = max(3.0, 0.32 * len(table) + 1.2)
    fig, axes = plt.subplots(1, 2, figsize=(12, height), sharey=True)
    axes[0].barh(labels, table.overhead, color="tab:blue")
    axes[0].axvline(1.0, color="grey", lw=0.8, ls="--")
    axes[0].set_xlabel("step time / plain SGD step time (median)")
    axes[1].barh(labels, table.state, color="tab:orange")
    axes[1].set_xlabel("optimizer state (floats per parameter)")
    for ax in axes:
        ax.grid(alpha=0.3, axis="x")
    axes[0].invert_yaxis()
    fig.suptitle(f"Compute and memory per optimizer; measured on {_hardware(runs)}", fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, folder: Path, name: str) -> list[Path]:
    """Save as PNG and PDF; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=130 if path.suffix == ".png" else None)
    plt.close(fig)
    return paths


def draw_sweep_figures(runs: pd.DataFrame, curves: pd.DataFrame, folder: Path) -> list[Path]:
    """All figures of one sweep into ``folder``: Pareto scatters and loss curves when the sweep
    trained; the overhead figure when its runs vary batch size or parameter count, else a bar
    chart of each optimizer's compute and memory."""
    paths = []
    if runs.final_eval_loss.notna().any():
        paths += save_figure(pareto_figure(runs), folder, "pareto")
        paths += save_figure(loss_curves_figure(runs, curves), folder, "loss_curves")
    if "step_over_sgd_step" in runs and (
            runs.batch_size.nunique() > 1 or runs.num_params.nunique() > 1):
        paths += save_figure(overhead_figure(runs), folder, "overhead")
    elif "step_over_sgd_step" in runs and runs.step_over_sgd_step.notna().any():
        paths += save_figure(costs_figure(runs), folder, "costs")
    return paths


def main(argv: list[str]) -> int:
    folders = [Path(a) for a in argv] or sorted(p.parent for p in Path("results").glob(
        "*/runs.parquet"))
    if not folders:
        print("no results/*/runs.parquet found: run `make sweep` first", file=sys.stderr)
        return 1
    for folder in folders:
        runs = pd.read_parquet(folder / "runs.parquet")
        curves = pd.read_parquet(folder / "curves.parquet")
        for path in draw_sweep_figures(runs, curves, folder / "figures"):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
