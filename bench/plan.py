"""Expand a sweep preset into the list of runs it stands for, each a fully composed config.

A preset names tasks, seeds and optimizers, each optimizer with one setting of hyperparameter
overrides or a list of them (a grid); the runs are their product. Every run's config is
composed by Hydra from the same config tree as a single run would be, with the preset's choices
first and the user's command-line overrides last, so ``optimizer.b1=0.95`` on the command line
reaches every run. A command-line choice of an axis (``optimizer=adam``, ``task=synthetic``,
``seed=3``) narrows the sweep to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.records import run_id

AXES = {"optimizer": "optimizers", "task": "tasks", "seed": "seeds"}


class SweepConfigError(ValueError):
    """A sweep that cannot run as configured; raised before any work starts."""


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its names, its composed config and its identity."""

    optimizer: str
    task: str
    seed: int
    overrides: tuple[str, ...]
    config: DictConfig = field(repr=False, compare=False)

    @property
    def identity(self) -> dict[str, Any]:
        """Everything that defines the run's result; hashed into its run id."""
        pick = {k: OmegaConf.to_container(self.config[k], resolve=True)
                for k in ("optimizer", "task", "run")}
        return {**pick, "seed": self.seed}

    @property
    def run_id(self) -> str:
        return run_id(self.identity)


def override_key(override: str) -> str:
    """The config key an override string sets: ``+a.b=1`` -> ``a.b``."""
    return override.split("=", 1)[0].lstrip("+~")


def _value(value: Any) -> str:
    """A Python value in Hydra's override grammar (JSON is a subset of it)."""
    return json.dumps(value)


def _arms(optimizers: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(name, hyperparameters) pairs: a name maps to one setting or to a list of settings."""
    arms = []
    for name, settings in optimizers.items():
        for hparams in settings if isinstance(settings, list) else [settings]:
            if hparams is not None and not isinstance(hparams, Mapping):
                raise SweepConfigError(
                    f"sweep.optimizers.{name}={hparams!r}: expected a mapping of "
                    "hyperparameters (or a list of them)")
            arms.append((name, hparams or {}))
    return arms


def plan_runs(
    sweep: Mapping[str, Any],
    cli_overrides: Sequence[str],
    compose: Callable[[list[str]], DictConfig],
) -> list[PlannedRun]:
    """All runs of ``sweep`` in execution order (task, then optimizer, then seed)."""
    for key in AXES.values():
        if not sweep.get(key):
            raise SweepConfigError(f"sweep.{key} is empty: nothing to run")
    chosen = {override_key(o): o.split("=", 1)[1] for o in cli_overrides if "=" in o}
    tasks = [chosen["task"]] if "task" in chosen else list(sweep["tasks"])
    optimizers: dict[str, Mapping[str, Any]] = dict(sweep["optimizers"])
    if "optimizer" in chosen:
        optimizers = {chosen["optimizer"]: optimizers.get(chosen["optimizer"]) or {}}
    try:
        seeds = [int(chosen["seed"])] if "seed" in chosen else [int(s) for s in sweep["seeds"]]
    except ValueError as exc:
        raise SweepConfigError(f"seed: expected integers ({exc})") from exc
    passthrough = [o for o in cli_overrides
                   if override_key(o) not in AXES and not override_key(o).startswith("hydra.")]
    cli_keys = {override_key(o) for o in passthrough}
    custom_target = "optimizer._target_" in cli_keys

    runs = []
    for task in tasks:
        for name, hparams in _arms(optimizers):
            arm = [f"optimizer.{k}={_value(v)}" for k, v in hparams.items()
                   if f"optimizer.{k}" not in cli_keys]
            for seed in seeds:
                overrides = [f"optimizer={name}", f"task={task}", f"seed={seed}", *arm,
                             *passthrough]
                config = compose(overrides)
                label = str(config.optimizer["_target_"]).rsplit(".", 1)[-1] if custom_target \
                    else name
                runs.append(PlannedRun(label, task, seed, tuple(overrides), config))
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise SweepConfigError("the sweep plans the same run twice (identical configs)")
    return runs
