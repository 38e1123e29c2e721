"""Statistics for the figures: bootstrap intervals, paired seeds, time ratios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.analysis.stats import (
    bootstrap_mean_band,
    bootstrap_mean_ci,
    paired_seeds,
    paired_summary,
    seed_summary,
    time_ratio,
)


def test_bootstrap_interval_brackets_the_mean_and_is_reproducible():
    x = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    lo, hi = bootstrap_mean_ci(x)
    assert lo < x.mean() < hi
    assert x.min() <= lo and hi <= x.max()
    assert (lo, hi) == bootstrap_mean_ci(x)
    assert bootstrap_mean_ci(np.array([3.0, np.nan])) == (3.0, 3.0)
    assert all(np.isnan(bootstrap_mean_ci(np.array([]))))


def test_bootstrap_interval_narrows_with_more_seeds():
    rng = np.random.default_rng(0)
    few, many = rng.normal(size=4), rng.normal(size=400)
    assert np.diff(bootstrap_mean_ci(many))[0] < np.diff(bootstrap_mean_ci(few))[0]


def test_bootstrap_rejects_bad_level():
    with pytest.raises(ValueError, match="level=1.5"):
        bootstrap_mean_ci(np.ones(3), level=1.5)


def test_band_resamples_whole_seeds():
    """Two seeds whose curves differ by a constant: the band's ends are those curves."""
    steps = np.arange(10.0)
    wide = np.column_stack([steps, steps + 2.0])
    lo, hi = bootstrap_mean_band(wide)
    assert np.allclose(lo, steps) and np.allclose(hi, steps + 2.0)


def _runs() -> pd.DataFrame:
    rows = []
    for opt, base in (("adam", 1.0), ("sgd", 2.0)):
        for seed in (0, 1, 2):
            rows.append({"task": "t", "optimizer": opt, "seed": seed, "status": "ok",
                         "loss": base + 0.1 * seed})
    rows.append({"task": "t", "optimizer": "sgd", "seed": 7, "status": "ok", "loss": 9.0})
    rows.append({"task": "t", "optimizer": "sgd", "seed": 3, "status": "diverged",
                 "loss": np.nan})
    return pd.DataFrame(rows)


def test_paired_seeds_only_shared_seeds():
    paired = paired_seeds(_runs(), "loss", "adam")
    sgd = paired[paired.optimizer == "sgd"]
    assert sgd.seed.tolist() == [0, 1, 2]  # seed 7 has no Adam run to pair with
    assert np.allclose(sgd.difference, 1.0)
    summary = paired_summary(_runs(), "loss", "adam").set_index("optimizer")
    assert summary.loc["sgd", "difference"] == pytest.approx(1.0)
    assert summary.loc["sgd", "seeds"] == 3


def test_paired_seeds_needs_the_baseline():
    with pytest.raises(ValueError, match="'lion'"):
        paired_seeds(_runs(), "loss", "lion")


def test_seed_summary_ok_runs_only():
    summary = seed_summary(_runs(), "loss").set_index("optimizer")
    assert summary.loc["sgd", "seeds"] == 4
    assert summary.loc["sgd", "mean"] == pytest.approx((2.0 + 2.1 + 2.2 + 9.0) / 4)
    assert summary.loc["adam", "min"] == 1.0 and summary.loc["adam", "max"] == pytest.approx(1.2)


def test_time_ratio_divides_by_the_reference_median():
    runs = pd.DataFrame({"task": ["a", "b"], "step_time_median_s": [2.0, 6.0],
                         "step_time_p10_s": [1.0, 5.0], "step_time_p90_s": [3.0, 9.0]})
    ref = pd.DataFrame({"task": ["a", "b"], "step_time_median_s": [1.0, 3.0]})
    out = time_ratio(runs, ref, keys=("task",)).set_index("task")
    assert out.ratio.tolist() == [2.0, 2.0]
    assert out.ratio_lo.tolist() == [1.0, 5.0 / 3.0] and out.ratio_hi.tolist() == [3.0, 3.0]
