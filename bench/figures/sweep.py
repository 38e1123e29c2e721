"""A sweep's own figures, drawn into results/NAME/figures/ after every sweep by the paper's
figure functions; ``python -m bench.figures.sweep results/NAME`` redraws them from its tables."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bench.analysis.summary import newest_per_seed
from bench.figures import compute, curves, generalisation, pareto, style
from bench.figures.paper import describe_scale
from bench.figures.style import save_figure
from bench.records.files import read_parquet

__all__ = ["draw_sweep_figures", "save_figure"]


def draw_sweep_figures(runs: pd.DataFrame, curve_rows: pd.DataFrame | None,
                       folder: Path) -> list[Path]:
    """Pareto fronts and loss curves (every arm) when the sweep trained; the overhead figure
    when its timed runs vary batch size or parameter count, else per-optimizer cost bars; the
    generalisation figure and table when learned optimizers ran beside a tuned Adam."""
    runs = newest_per_seed(runs)
    scale = describe_scale(runs)
    paths = []
    if style.numeric(runs, ("final_eval_loss",)).final_eval_loss.notna().any():
        fig, _ = pareto.pareto_figure(runs, curve_rows, scale, best=False)
        paths += save_figure(fig, folder, "pareto")
        fig, _ = curves.curves_figure(runs, curve_rows, scale)
        paths += save_figure(fig, folder, "loss_curves")
    if style.numeric(runs, ("step_over_sgd_step",)).step_over_sgd_step.notna().any():
        varies = any(c in runs and runs[c].nunique() > 1 for c in ("batch_size", "num_params"))
        if varies:
            fig, data = compute.overhead_figure(runs, scale)
            paths += save_figure(fig, folder, "overhead", data)
        else:
            paths += save_figure(compute.costs_figure(runs, scale)[0], folder, "costs")
    learned = "meta_trained" in runs and (runs["meta_trained"] == True).any()  # noqa: E712
    if learned and generalisation.is_tuned_adam(runs).any():
        paths += generalisation.draw(runs, curve_rows, folder, scale)
    return paths


def main(argv: list[str]) -> int:
    folders = [Path(a) for a in argv] or sorted(p.parent for p in Path("results").glob(
        "*/runs.parquet"))
    if not folders:
        print("no results/*/runs.parquet found: run `make sweep` first", file=sys.stderr)
        return 1
    for folder in folders:
        runs = read_parquet(folder / "runs.parquet")
        curve_path = folder / "curves.parquet"
        curve_rows = read_parquet(curve_path) if curve_path.exists() else None
        for path in draw_sweep_figures(runs, curve_rows, folder / "figures"):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
