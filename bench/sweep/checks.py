"""Up-front checks: every planned run's optimizer, settings and task are built (or their
factories checked) before any work, and the results folder is writable."""

from __future__ import annotations

import inspect
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


class TaskCache:
    """Builds tasks from their configs, each once per process (a sweep reuses them)."""

    def __init__(self) -> None:
        self._tasks: dict[str, Any] = {}

    def __call__(self, cfg: DictConfig) -> Any:
        key = json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True)
        if key not in self._tasks:
            self._tasks[key] = hydra.utils.instantiate(cfg, _convert_="all")
        return self._tasks[key]


def _check_factory(cfg: DictConfig) -> None:
    """Raise if ``cfg._target_`` is missing or does not accept ``cfg``'s arguments."""
    target = hydra.utils.get_method(str(cfg._target_))
    arguments = {k: v for k, v in cfg.items() if not (k.startswith("_") and k.endswith("_"))}
    try:
        inspect.signature(target).bind(**arguments)
    except TypeError as exc:
        raise TypeError(f"{cfg._target_}: {exc}") from exc


def check_runs(runs: Sequence[RunSpec], tasks: TaskCache, build: set[str] | None = None) -> None:
    """Build every run's optimizer and settings and the tasks of the runs in ``build``
    (default: all); fail on the first bad one. The other runs' tasks are checked without
    loading data: their factory exists and accepts the config's arguments (runs already
    recorded need no data, and loading it would dominate a rerun with nothing to do)."""
    from optimizers import build_optimizer

    for spec in runs:
        where = f"run {spec.optimizer}/{spec.task}/seed={spec.seed}"
        try:
            build_optimizer(spec.config.optimizer)
            run_settings(spec.config)
            if build is None or spec.run_id in build:
                tasks(spec.config.task)
            else:
                _check_factory(spec.config.task)
        except SweepConfigError:
            raise
        except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
            raise SweepConfigError(f"{where}: {exc}") from exc
        except Exception as exc:  # Hydra's InstantiationException and the like
            raise SweepConfigError(f"{where}: {type(exc).__name__}: {exc}") from exc


def check_writable(folder: Path) -> None:
    """Raise ``SweepConfigError`` naming ``folder`` unless a file can be created in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check"):
            pass
    except OSError as exc:
        raise SweepConfigError(f"results folder {folder} is not writable: {exc}") from exc
