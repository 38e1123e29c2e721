"""Statistics for the figures: seed summaries with bootstrap confidence intervals, paired seeds
across optimizers, and overhead ratios with their spread.

Seeds are few (2 to 5), so the intervals are percentile bootstrap intervals of the mean over
seeds, resampled with a fixed generator so that a figure redraws identically. With two seeds a
bootstrap interval is coarse (it spans the two values at most); the figures say how many seeds
each point has.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

LEVEL = 0.95
RESAMPLES = 2000


def bootstrap_mean_ci(values: np.ndarray, level: float = LEVEL, resamples: int = RESAMPLES,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs dropped); a single value
    is its own interval, no values give (nan, nan)."""
    if not 0 < level < 1:
        raise ValueError(f"level={level!r}: expected a number in (0, 1)")
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan")
    if len(x) == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_ratio_ci(numerator: np.ndarray, denominator: np.ndarray, level: float = LEVEL,
                       resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(numerator) / mean(denominator), the two samples
    (e.g. two optimizers' seeds) resampled independently; NaNs dropped; (nan, nan) if either
    is empty."""
    if not 0 < level < 1:
        raise ValueError(f"level={level!r}: expected a number in (0, 1)")
    a, b = (np.asarray(v, dtype=float) for v in (numerator, denominator))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    ratios = (a[rng.integers(0, len(a), size=(resamples, len(a)))].mean(axis=1)
              / b[rng.integers(0, len(b), size=(resamples, len(b)))].mean(axis=1))
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(ratios, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_mean_band(wide: np.ndarray, level: float = LEVEL, resamples: int = 500,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise bootstrap interval of the mean over columns (seeds) of ``wide`` [steps, seeds],
    resampling whole seeds (the same draw at every step, so a band follows whole curves)."""
    wide = np.asarray(wide, dtype=float)
    n = wide.shape[1]
    if n < 2:
        return wide[:, 0].copy(), wide[:, 0].copy()
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n)
                       for _ in range(resamples)])  # [resamples, seeds]
    means = wide @ counts.T / n  # [steps, resamples]
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail], axis=1)
    return lo, hi


def seed_summary(runs: pd.DataFrame, value: str,
                 by: Sequence[str] = ("task", "optimizer")) -> pd.DataFrame:
    """Per group of ok runs: seeds, mean of ``value`` with its bootstrap interval, min, max."""
    if value not in runs:
        raise KeyError(f"column {value!r} is not in the runs table")
    ok = runs[(runs.status == "ok") & runs[value].notna()]
    rows = []
    for key, group in ok.groupby(list(by), sort=True):
        values = group[value].to_numpy(dtype=float)
        lo, hi = bootstrap_mean_ci(values)
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))),
                     "seeds": int(group.seed.nunique()), "mean": float(values.mean()),
                     "ci_lo": lo, "ci_hi": hi, "min": float(values.min()),
                     "max": float(values.max())})
    columns = [*by, "seeds", "mean", "ci_lo", "ci_hi", "min", "max"]
    return pd.DataFrame(rows, columns=columns)


def paired_seeds(runs: pd.DataFrame, value: str, baseline: str,
                 by: str = "task") -> pd.DataFrame:
    """Each ok run's ``value`` beside the baseline optimizer's on the same task and seed, and
    their difference and ratio; runs whose seed the baseline lacks are left out (paired
    comparisons only)."""
    ok = runs[(runs.status == "ok") & runs[value].notna()]
    base = ok[ok.optimizer == baseline][[by, "seed", value]].rename(
        columns={value: "baseline_value"})
    if base.empty:
        raise ValueError(f"baseline optimizer {baseline!r} has no ok runs with {value!r}")
    paired = ok[[by, "optimizer", "seed", value]].merge(base, on=[by, "seed"])
    paired["difference"] = paired[value] - paired.baseline_value
    paired["ratio"] = paired[value] / paired.baseline_value
    return paired.sort_values([by, "optimizer", "seed"]).reset_index(drop=True)


def paired_summary(runs: pd.DataFrame, value: str, baseline: str) -> pd.DataFrame:
    """Per task and optimizer: mean paired difference to the baseline over shared seeds, with
    its bootstrap interval (an interval excluding 0 means the seeds agree on the sign)."""
    paired = paired_seeds(runs, value, baseline)
    rows = []
    for (task, optimizer), group in paired.groupby(["task", "optimizer"], sort=True):
        lo, hi = bootstrap_mean_ci(group.difference.to_numpy())
        rows.append({"task": task, "optimizer": optimizer, "seeds": len(group),
                     "difference": float(group.difference.mean()), "ci_lo": lo, "ci_hi": hi})
    return pd.DataFrame(rows, columns=["task", "optimizer", "seeds", "difference", "ci_lo",
                                       "ci_hi"])


def time_ratio(runs: pd.DataFrame, reference: pd.DataFrame, keys: Sequence[str],
               time: str = "step_time") -> pd.DataFrame:
    """Each run's median step time over the reference run's median on the same ``keys`` (e.g.
    the same task arm and seed), with a spread over timing repeats: p10 and p90 of the run
    over the reference's median."""
    cols = [f"{time}_median_s", f"{time}_p10_s", f"{time}_p90_s"]
    ref = reference[[*keys, cols[0]]].rename(columns={cols[0]: "reference_s"})
    ref = ref.groupby(list(keys), as_index=False).reference_s.median()
    merged = runs.merge(ref, on=list(keys))
    merged["ratio"] = merged[cols[0]] / merged.reference_s
    merged["ratio_lo"] = merged[cols[1]] / merged.reference_s
    merged["ratio_hi"] = merged[cols[2]] / merged.reference_s
    return merged


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both axes (lower is better), by x."""
    order = np.lexsort((y, x))
    front, best = [], np.inf
    for i in order:
        if y[i] < best:
            front.append(i)
            best = y[i]
    return np.array(front, dtype=int)
