"""What a run is asked to do (``RunSettings``, the ``run.*`` config) and what it gives back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

# How one program holds several seeds (``sweep.seed_batching``; bench.train.loop).
SEED_BATCHINGS = ("auto", "vmap", "unroll")


@dataclass(frozen=True)
class RunSettings:
    """How long to train and how to measure.

    Attributes:
      steps: training steps (optimizer updates); 0 for a timing-only run (no training).
      eval_every: evaluate the whole evaluation split every this many steps (and at the end).
      chunk_steps: training steps per compiled call; the loss of every step is still kept.
      timing_protocol: ``scan`` times blocks of ``timing_block`` steps inside one compiled
        call and divides (tiny tasks are otherwise all dispatch, about 50 us a call);
        ``per_call`` times single compiled calls.
      timing_block: steps per timed call under ``scan``.
      timing_steps: timed steps of each of step, gradient and update (per protocol call count
        is ``timing_steps // timing_block`` under ``scan``).
      timing_budget_s: stop timing after about this many seconds (at least 10 calls of each
        function are always timed); 0 for no limit.
      warmup_steps: untimed calls before timing.
      divergence_factor: a training loss above this multiple of the first step's loss (or a
        non-finite one) marks the run diverged.
      timing: time the step, gradient and update (a timing-grade run, which a sweep never
        runs beside another); false for a throughput-only run (step times left empty), which
        may share the machine.
    """

    steps: int = 2000
    eval_every: int = 200
    chunk_steps: int = 100
    timing_protocol: str = "scan"
    timing_block: int = 20
    timing_steps: int = 2000
    timing_budget_s: float = 5.0
    warmup_steps: int = 3
    divergence_factor: float = 10.0
    timing: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "eval_every", "chunk_steps", "timing_steps", "timing_block",
                     "warmup_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"run.{name}={value!r}: expected an integer")
            least = 0 if name in ("steps", "warmup_steps") else 1
            if value < least:
                raise ValueError(f"run.{name}={value}: must be at least {least}")
        for name in ("divergence_factor", "timing_budget_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"run.{name}={value!r}: expected a number")
        if self.timing_budget_s < 0:
            raise ValueError(f"run.timing_budget_s={self.timing_budget_s}: must be >= 0")
        if self.timing_protocol not in ("scan", "per_call"):
            raise ValueError(
                f"run.timing_protocol={self.timing_protocol!r}: expected 'scan' or 'per_call'")
        if not isinstance(self.timing, bool):
            raise ValueError(f"run.timing={self.timing!r}: expected true or false")
        if self.steps == 0 and not self.timing:
            raise ValueError("run.steps=0 with run.timing=false measures nothing: give steps "
                             "to train, or time the steps (run.timing=true)")
        if not self.divergence_factor > 1:
            raise ValueError(f"run.divergence_factor={self.divergence_factor}: must exceed 1")


@dataclass(frozen=True)
class RunResult:
    """Summary numbers (one row of runs.parquet, without config columns) and the curves."""

    status: str
    summary: dict[str, Any]
    curves: pd.DataFrame
