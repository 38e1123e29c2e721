"""The ``sweep.*`` settings, checked before any work: how a sweep runs, not what it runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.sweep.code_version import POLICIES
from bench.train.settings import SEED_BATCHINGS

# The preset's part of ``sweep``: what to run (planned by bench.sweep.plan).
PLAN_KEYS = ("tasks", "seeds", "optimizers", "tuned")


class SweepConfigError(ValueError):
    """A sweep that cannot run as configured; raised before any work starts."""


@dataclass(frozen=True)
class SweepSettings:
    """How a sweep runs (conf/config.yaml documents each setting)."""

    name: str
    force: bool = False
    retry_failed: bool = False
    prune: bool = False
    isolate: bool | str = True
    figures: bool = True
    jobs: int = 1
    shard: int = 0
    num_shards: int = 1
    collect_only: bool = False
    vmap_seeds: bool = False
    seed_batching: str = "auto"
    code_version: str = "source"
    compile_cache: str | None = None

    def __post_init__(self) -> None:
        for field in ("force", "retry_failed", "prune", "figures", "collect_only", "vmap_seeds"):
            value = getattr(self, field)
            if not isinstance(value, bool):
                raise SweepConfigError(f"sweep.{field}={value!r}: expected true or false")
        for field, least in (("jobs", 1), ("shard", 0), ("num_shards", 1)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SweepConfigError(f"sweep.{field}={value!r}: expected an integer")
            if value < least:
                raise SweepConfigError(f"sweep.{field}={value}: must be at least {least}")
        if self.shard >= self.num_shards:
            raise SweepConfigError(f"sweep.shard={self.shard}: must be below sweep.num_shards="
                                   f"{self.num_shards} (shards are numbered from 0)")
        if not (isinstance(self.isolate, bool) or str(self.isolate).lower() == "auto"):
            raise SweepConfigError(f"sweep.isolate={self.isolate!r}: expected true, false or auto")
        if self.seed_batching not in SEED_BATCHINGS:
            raise SweepConfigError(f"sweep.seed_batching={self.seed_batching!r}: expected one of "
                                   f"{', '.join(SEED_BATCHINGS)}")
        if self.code_version not in POLICIES:
            raise SweepConfigError(f"sweep.code_version={self.code_version!r}: expected one of "
                                   f"{', '.join(POLICIES)}")
        if self.compile_cache is not None and not isinstance(self.compile_cache, str):
            raise SweepConfigError(f"sweep.compile_cache={self.compile_cache!r}: expected a "
                                   "folder path or null")

    @classmethod
    def from_config(cls, sweep: Mapping[str, Any]) -> SweepSettings:
        """The settings of a resolved ``sweep`` section; unknown keys are errors."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(sweep) - known - set(PLAN_KEYS))
        if unknown:
            raise SweepConfigError(
                f"unknown sweep setting(s) {', '.join('sweep.' + k for k in unknown)}; known: "
                f"{', '.join(sorted(known | set(PLAN_KEYS)))}")
        return cls(**{k: v for k, v in sweep.items() if k in known})
