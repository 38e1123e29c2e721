"""Scores relative to tuned Adam: loss over Adam's, and "speedup over Adam".

The reference is built per task from a learning-rate sweep of Adam (``conf/sweep/
tune_adam.yaml``) as in the reference code base (REFERENCE.md, "Normalising performance"):
training losses clipped at 1.5 * ln(num_classes) for classification, averaged over seeds for
each learning rate, smoothed with an exponential moving average (decay 0.95), the lower
envelope taken over learning rates and made monotone non-increasing. The envelope maps a loss
to the number of Adam steps needed to reach it; a run's smoothed curve mapped through it and
divided by the run's own step count is its speedup over Adam.

``python -m bench.analysis.normalise results/tune_adam`` writes
``results/reference/tuned_adam.parquet`` (one row per task and step) and
``tuned_adam_grid.csv`` (one row per task and learning rate).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.records.files import read_parquet

EMA_DECAY = 0.95
CLIP_FACTOR = 1.5  # losses clipped at CLIP_FACTOR * ln(num_classes) (REFERENCE.md)
DEFAULT_REFERENCE = Path("results/reference/tuned_adam.parquet")
SCORED_STATUSES = ("ok", "diverged")


def loss_clip(num_classes: float | None) -> float:
    """1.5 * ln(num_classes) for a classification loss; +inf (no clipping) otherwise."""
    if num_classes is None or pd.isna(num_classes) or num_classes < 2:
        return math.inf
    return CLIP_FACTOR * math.log(float(num_classes))


def ema(values: np.ndarray, decay: float = EMA_DECAY) -> np.ndarray:
    """Exponential moving average along the last axis, started at the first value (no bias)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.empty_like(values)
    out[..., 0] = values[..., 0]
    for t in range(1, values.shape[-1]):
        out[..., t] = decay * out[..., t - 1] + (1 - decay) * values[..., t]
    return out


def envelope(smoothed: np.ndarray) -> np.ndarray:
    """Lower envelope over rows (learning rates), made monotone non-increasing over steps."""
    lowest = np.min(np.where(np.isnan(smoothed), np.inf, smoothed), axis=0)
    return np.minimum.accumulate(lowest)


def steps_to_reach(adam_loss: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """For each loss, the first step at which the non-increasing envelope ``adam_loss`` is at
    or below it; ``len(adam_loss)`` where Adam never gets there within its budget."""
    return np.searchsorted(-np.asarray(adam_loss), -np.asarray(losses), side="left")


def speedup_curve(adam_loss: np.ndarray, run_losses: np.ndarray) -> np.ndarray:
    """Speedup at steps 1 .. n-1 of a run whose (clipped, smoothed) loss at step t is
    ``run_losses[t]``: Adam's steps to reach that loss over t. Beyond Adam's budget the
    numerator is capped at the budget, so the speedup there is a lower bound."""
    steps = np.arange(1, len(run_losses))
    return steps_to_reach(adam_loss, run_losses[1:]) / steps


def _train_curves(curves: pd.DataFrame) -> dict[str, np.ndarray]:
    """Training losses of each run, ordered by step."""
    train = curves[curves.split == "train"].sort_values(["run_id", "step"])
    return {rid: group.loss.to_numpy(np.float64) for rid, group in train.groupby("run_id")}


def _padded(losses: np.ndarray, length: int, clip: float) -> np.ndarray:
    """Clip a curve and extend a stopped (diverged) run to ``length`` at the clip value."""
    out = np.full(length, clip)
    kept = np.minimum(np.where(np.isfinite(losses), losses, np.inf), clip)[:length]
    out[: len(kept)] = kept
    return out


def build_reference(runs: pd.DataFrame, curves: pd.DataFrame,
                    optimizer: str = "adam") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tuned-``optimizer`` envelope per task (long table: task, step, adam_loss, ...) and
    the per-learning-rate summary it came from (task, learning_rate, final smoothed loss)."""
    # A grid arm's name carries its settings: "adam(learning_rate=0.001)".
    named = (runs.optimizer == optimizer) | runs.optimizer.str.startswith(optimizer + "(")
    chosen = runs[named & runs.status.isin(SCORED_STATUSES) & (runs.steps > 0)]
    if chosen.empty:
        raise ValueError(f"no finished {optimizer} training runs to build a reference from")
    train = _train_curves(curves)
    tables, grids = [], []
    for task, group in chosen.groupby("task", sort=True):
        length = int(group.steps.max())
        clip = loss_clip(group.num_classes.iloc[0] if "num_classes" in group else None)
        rates, smoothed, grid = [], [], []
        for rate, by_rate in group.groupby("opt_learning_rate", sort=True):
            matrix = np.stack([_padded(train[rid], length, clip) for rid in by_rate.run_id
                               if rid in train])
            curve = ema(matrix.mean(axis=0))
            rates.append(float(rate))
            smoothed.append(curve)
            grid.append({"task": task, "learning_rate": float(rate), "seeds": len(matrix),
                         "diverged": int((by_rate.status == "diverged").sum()),
                         "final_smoothed_loss": float(curve[-1])})
        smoothed_arr = np.stack(smoothed)
        best = rates[int(np.nanargmin(np.where(np.isfinite(smoothed_arr[:, -1]),
                                               smoothed_arr[:, -1], np.nan)))]
        tables.append(pd.DataFrame({
            "task": task, "step": np.arange(length), "adam_loss": envelope(smoothed_arr),
            "best_learning_rate": best, "loss_clip": clip,
            "num_classes": group.num_classes.iloc[0] if "num_classes" in group else np.nan,
            "num_params": int(group.num_params.iloc[0]), "seeds": int(group.seed.nunique()),
            "learning_rates": len(rates),
        }))
        grids.append(pd.DataFrame(grid).assign(best=lambda g, b=best: g.learning_rate == b))
    return pd.concat(tables, ignore_index=True), pd.concat(grids, ignore_index=True)


def load_reference(path: str | Path = DEFAULT_REFERENCE) -> pd.DataFrame:
    """The stored tuned-Adam reference: task, step, adam_loss, best_learning_rate, loss_clip,
    ... (one row per task and step)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no tuned-Adam reference; build one with `make sweep SWEEP=tune_adam` then "
            "`python -m bench.analysis.normalise results/tune_adam`")
    return read_parquet(path)


def add_scores(runs: pd.DataFrame, curves: pd.DataFrame,
               reference: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with loss_over_adam, speedup_over_adam (at the run's last step) and
    speedup_over_adam_mean (over its steps); NaN where a task has no reference, a run has no
    training curve or did not finish (error, oom), or (loss_over_adam) the run is longer than
    the reference."""
    if curves is None:
        raise TypeError("add_scores needs the curves table (curves.parquet): the scores are "
                        "read off each run's training curve")
    out = runs.copy()
    for column in ("loss_over_adam", "speedup_over_adam", "speedup_over_adam_mean"):
        out[column] = np.nan
    references = {task: group.sort_values("step") for task, group in reference.groupby("task")}
    train = _train_curves(curves)
    for index, row in out.iterrows():
        ref = references.get(row["task"])
        if ref is None or row.get("status") not in SCORED_STATUSES:
            continue
        adam_loss = ref.adam_loss.to_numpy(np.float64)
        clip = float(ref.loss_clip.iloc[0])
        losses = train.get(row["run_id"])
        if losses is None or len(losses) < 2:
            continue
        last = len(losses) - 1
        final = row.get("final_train_loss", np.nan)
        final = clip if not np.isfinite(final) else min(float(final), clip)
        if last < len(adam_loss):
            out.loc[index, "loss_over_adam"] = final / adam_loss[last]
        clipped = np.minimum(np.where(np.isfinite(losses), losses, np.inf), clip)
        speedups = speedup_curve(adam_loss, ema(clipped))
        out.loc[index, "speedup_over_adam"] = speedups[-1]
        out.loc[index, "speedup_over_adam_mean"] = speedups.mean()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a tune_adam sweep's results folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--optimizer", default="adam")
    args = parser.parse_args(argv)
    runs = read_parquet(args.folder / "runs.parquet")
    curves = read_parquet(args.folder / "curves.parquet")
    reference, grid = build_reference(runs, curves, args.optimizer)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    reference.to_parquet(args.out, index=False)
    grid_path = args.out.with_name(args.out.stem + "_grid.csv")
    grid.to_csv(grid_path, index=False, float_format="%.6g")
    with pd.option_context("display.width", 120):
        print(grid.to_string(index=False))
    best = reference.groupby("task").agg(best_learning_rate=("best_learning_rate", "first"),
                                         final_adam_loss=("adam_loss", "last"))
    print(f"\nbest learning rate per task:\n{best.to_string()}")
    print(f"\nwrote {args.out} ({len(reference)} rows) and {grid_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
