"""Up-front checks: every planned run's task, optimizer and settings are built before any work,
the data each task reads fingerprinted, and the results folder checked writable."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from bench.sweep.settings import SweepConfigError
from bench.train.record import run_settings
from bench.train.spec import RunSpec
from optimizers.learned import checkpoint


class TaskCache:
    """Builds tasks from their configs, each once per process (a sweep reuses them)."""

    def __init__(self) -> None:
        self._tasks: dict[str, Any] = {}

    def __call__(self, cfg: DictConfig) -> Any:
        key = json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True)
        if key not in self._tasks:
            self._tasks[key] = hydra.utils.instantiate(cfg, _convert_="all")
        return self._tasks[key]


def _where(spec: RunSpec) -> str:
    return f"run {spec.optimizer}/{spec.task}/seed={spec.seed}"


def _named(spec: RunSpec, exc: Exception) -> SweepConfigError:
    if isinstance(exc, SweepConfigError):
        return exc
    if isinstance(exc, (ValueError, TypeError, FileNotFoundError, ImportError)):
        return SweepConfigError(f"{_where(spec)}: {exc}")
    return SweepConfigError(f"{_where(spec)}: {type(exc).__name__}: {exc}")


def with_data_fingerprints(runs: Sequence[RunSpec], tasks: TaskCache) -> list[RunSpec]:
    """``runs`` with the fingerprints of what each one reads besides its config: its task's
    data (each task built once) and its learned optimizer's checkpoint file; a task or
    checkpoint that cannot be read is an error naming the run."""
    out = []
    for spec in runs:
        try:
            task = tasks(spec.config.task)
            named = spec.config.optimizer.get("checkpoint")
            digest = None if named is None else checkpoint.digest(named)
        except Exception as exc:  # Hydra's InstantiationException wraps the factory's error
            raise _named(spec, exc) from exc
        out.append(dataclasses.replace(spec, data_fingerprint=task.data_fingerprint,
                                       checkpoint_digest=digest))
    return out


def check_runs(runs: Sequence[RunSpec]) -> None:
    """Build every run's optimizer and settings and check its seed; fail on the first bad one
    with an error naming the run."""
    from optimizers import build_optimizer

    for spec in runs:
        try:
            if isinstance(spec.seed, bool) or not isinstance(spec.seed, int) or spec.seed < 0:
                raise ValueError(f"seed={spec.seed!r}: expected a non-negative integer")
            build_optimizer(spec.config.optimizer)
            run_settings(spec.config)
        except Exception as exc:
            raise _named(spec, exc) from exc


def check_writable(folder: Path) -> None:
    """Raise ``SweepConfigError`` naming ``folder`` unless a file can be created in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check"):
            pass
    except OSError as exc:
        raise SweepConfigError(f"results folder {folder} is not writable: {exc}") from exc
