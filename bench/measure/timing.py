"""Wall-clock timing of compiled functions with the device synchronised."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np


def time_calls(call: Callable[[], Any], repeats: int, warmup: int) -> np.ndarray:
    """Seconds per call of ``call()``, each waited for with ``block_until_ready``.

    ``warmup`` calls run first and are discarded (caches, allocator, clocks settle).
    """
    return time_interleaved({"call": call}, repeats, warmup)["call"]


# A cache refill (tens of MB at tens of GB/s) costs about a millisecond: calls of this length
# or more are timed without an untimed call before them.
PRIME_BELOW_S = 0.05


def time_interleaved(
    calls: Mapping[str, Callable[[], Any]], repeats: int, warmup: int,
    budget_s: float | None = None, min_repeats: int = 10,
) -> dict[str, np.ndarray]:
    """Seconds per call of each callable, timed in round-robin order.

    Interleaving makes the samples of different functions share the machine's drifts (clock
    boost, other load), so their ratios are fairer than back-to-back blocks would give. Each
    timed call follows an untimed call of the same function, so that it finds its own data in
    the caches and pays nothing for the previous function's (dirty lines written back, its
    working set evicted). Calls slower than ``PRIME_BELOW_S`` are not
    primed: refilling a cache costs them too little to matter. With ``budget_s``, rounds stop
    once that many seconds have been spent timing and at least ``min_repeats`` rounds are
    done, so that big tasks do not take minutes to time.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats}: must be at least 1")
    for _ in range(warmup):
        for call in calls.values():
            jax.block_until_ready(call())
    samples: dict[str, list[float]] = {name: [] for name in calls}
    began = time.perf_counter()
    for i in range(repeats):
        for name, call in calls.items():
            last = samples[name][-1] if samples[name] else 0.0
            if len(calls) > 1 and last < PRIME_BELOW_S:  # an untimed call primes the caches
                jax.block_until_ready(call())
            start = time.perf_counter()
            jax.block_until_ready(call())
            samples[name].append(time.perf_counter() - start)
        if budget_s and i + 1 >= min_repeats and time.perf_counter() - began > budget_s:
            break
    return {name: np.array(values) for name, values in samples.items()}


def summarize(samples: np.ndarray, prefix: str) -> dict[str, float]:
    """Median, 10th and 90th percentile and count of timing samples, as record columns."""
    p10, median, p90 = np.percentile(samples, [10, 50, 90])
    return {
        f"{prefix}_median_s": float(median),
        f"{prefix}_p10_s": float(p10),
        f"{prefix}_p90_s": float(p90),
        f"{prefix}_n": int(len(samples)),
    }


class Stopwatch:
    """Accumulates elapsed seconds over several ``with`` blocks."""

    def __init__(self) -> None:
        self.total = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.total += time.perf_counter() - self._start
