"""``run(task, optimizer, settings, seeds) -> results``: what a run costs and what it buys.

Costs first (``bench.measure.run_costs``: sizes, state memory, XLA's static costs and, for a
single timing-grade run, the step, gradient and update times), then training
(``bench.train.loop``), then the process's memory peaks. One seed or several seeds trained
together go through the same code and give rows with the same columns; seeds trained together
leave the step-time columns empty (their time is the group's, not a seed's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optax
import pandas as pd

from bench.measure import memory
from bench.measure.run_costs import measure_costs
from bench.train.loop import CURVE_COLUMNS, resolve_batching, train
from bench.train.settings import RunResult, RunSettings
from tasks.base import Task


def memory_peaks() -> dict[str, int | None]:
    """The process's and the device's memory peaks since the last reset."""
    return {
        "peak_rss_bytes": memory.peak_rss_bytes(),
        "peak_device_bytes": memory.peak_device_bytes(),
        "nvml_used_bytes": memory.nvml_used_bytes(),
    }


def run(task: Task, tx: optax.GradientTransformationExtraArgs, settings: RunSettings,
        seeds: Sequence[int] = (0,), batching: str = "auto",
        time_steps: bool = True) -> list[RunResult]:
    """Measure and train ``tx`` on ``task`` once per seed; one result per seed, in order.

    ``batching`` says how one program holds several seeds (``loop.resolve_batching``). Step
    times are measured for a single seed with ``time_steps`` and ``settings.timing`` (a
    timing-grade run); seeds trained together are throughput-only.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("run: no seeds given")
    if settings.steps == 0 and len(seeds) > 1:
        raise ValueError("seeds trained together need run.steps >= 1 (timing-only runs are "
                         "measured one by one)")
    resolved = resolve_batching(batching, len(seeds))
    memory.reset_peak_rss()
    costs = measure_costs(task, tx, settings, seeds[0], timed=time_steps and len(seeds) == 1)
    common: dict[str, Any] = {"steps": settings.steps, "num_classes": task.num_classes,
                              "task_family": task.family, "vmapped_seeds": len(seeds),
                              "data_fingerprint": task.data_fingerprint,
                              "seed_batching": resolved, **costs}
    if settings.steps == 0:  # timing-only run
        empty = pd.DataFrame(columns=CURVE_COLUMNS)
        return [RunResult("ok", {**common, "steps_completed": 0, **memory_peaks()}, empty)]
    trained, program = train(task, tx, settings, seeds, resolved)
    program["train_compile_time_s"] = program.pop("compile_time_s")
    peaks = memory_peaks()
    return [RunResult(t.status, {**common, **program, **t.summary, **peaks}, t.curves)
            for t in trained]


def run_one(task: Task, tx: optax.GradientTransformationExtraArgs, settings: RunSettings,
            seed: int = 0) -> RunResult:
    """One seed's ``run``: the single-run case."""
    return run(task, tx, settings, [seed])[0]
