"""Expand a sweep preset into the list of runs it stands for, each a fully composed config.

A preset names tasks, seeds and optimizers; a task or optimizer may carry one setting of
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
from pathlib import Path
from typing import Any, NamedTuple

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
    optimizer_config: str = ""  # the optimizer's config file name, when its target is unchanged
    code_version: str | None = None  # see bench.code_version; None: not part of the identity
    vmapped: bool = False  # trained with other seeds in one program (bench.vmapped)

    @property
    def config_identity(self) -> dict[str, Any]:
        """What the config says about the run: optimizer, task, run settings, seed and how the
        run is executed (vmapped or not; the latter adds nothing, keeping older ids valid)."""
        pick = {k: OmegaConf.to_container(self.config[k], resolve=True)
                for k in ("optimizer", "task", "run")}
        return {**pick, "seed": self.seed, **({"vmapped": True} if self.vmapped else {})}

    @property
    def identity(self) -> dict[str, Any]:
        """Everything that defines the run's result, the code version included; hashed into
        its run id."""
        code = {} if self.code_version is None else {"code": self.code_version}
        return {**self.config_identity, **code}

    @property
    def run_id(self) -> str:
        return run_id(self.identity)

    @property
    def config_id(self) -> str:
        """The run's id without the code version: the same run under other code shares it."""
        return run_id(self.config_identity)

    @property
    def seed_group(self) -> str:
        """Runs that differ only in seed share this key (they can train as one program)."""
        return run_id({k: v for k, v in self.config_identity.items() if k != "seed"})


class CachedCompose:
    """``compose(overrides)`` that asks Hydra once per set of config-group choices and applies
    plain ``key=value`` overrides to a copy of that config.

    A full Hydra compose takes about 0.1 s; a sweep of hundreds of runs varies only values
    (learning rates, seeds) over a few group choices, so planning would otherwise dominate a
    rerun that has nothing to do. Group choices (``optimizer=adam``), additions (``+k=v``),
    deletions (``~k``) and package overrides go through Hydra as they are.
    """

    def __init__(self, compose: Callable[[list[str]], DictConfig], groups: set[str]) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self._compose, self._groups = compose, groups
        self._parser = OverridesParser.create()
        self._composed: dict[tuple[str, ...], DictConfig] = {}

    def __call__(self, overrides: list[str]) -> DictConfig:
        import copy

        base, values = [], []
        for override in self._parser.parse_overrides(overrides):
            plain = (override.is_add() is False and override.is_delete() is False
                     and override.is_force_add() is False and override.package is None
                     and override.key_or_group not in self._groups)
            (values if plain else base).append(override)
        key = tuple(o.input_line for o in base)
        if key not in self._composed:
            self._composed[key] = self._compose(list(key))
        config = copy.deepcopy(self._composed[key])
        for override in values:
            try:
                OmegaConf.update(config, override.key_or_group, override.value(), merge=False)
            except Exception as exc:  # OmegaConf's struct errors name the key
                raise SweepConfigError(f"could not apply {override.input_line}: {exc}") from exc
        return config


def config_groups(conf_dir: Path) -> set[str]:
    """The config groups under ``conf_dir`` (folders holding YAML files), as Hydra names them."""
    return {str(p.parent.relative_to(conf_dir)) for p in conf_dir.rglob("*.yaml")
            if p.parent != conf_dir}


def override_key(override: str) -> str:
    """The config key an override string sets: ``+a.b=1`` -> ``a.b``."""
    return override.split("=", 1)[0].lstrip("+~")


def _value(value: Any) -> str:
    """A Python value in Hydra's override grammar (JSON is a subset of it)."""
    return json.dumps(value)


class Arm(NamedTuple):
    """One setting of a config group: its config name, overrides and display label."""

    name: str
    hparams: Mapping[str, Any]
    label: str


def _arms(axis: str, entries: Mapping[str, Any] | Sequence[str]) -> list[Arm]:
    """The arms of an axis: a list of names, or a mapping from a name to one setting of
    overrides or a list of settings (a grid). A name with several settings is labelled with
    them, ``adam(learning_rate=0.01)``, so that the arms stay apart in tables and plots."""
    if not isinstance(entries, Mapping):
        entries = {name: None for name in entries}
    arms = []
    for name, settings in entries.items():
        grid = settings if isinstance(settings, list) else [settings]
        for hparams in grid:
            if hparams is not None and not isinstance(hparams, Mapping):
                raise SweepConfigError(
                    f"sweep.{axis}.{name}={hparams!r}: expected a mapping of settings "
                    "(or a list of them)")
            hparams = dict(hparams or {})
            label = name
            if len(grid) > 1:
                label += "(" + ",".join(f"{k}={_value(v)}" for k, v in hparams.items()) + ")"
            arms.append(Arm(str(name), hparams, label))
    return arms


def plan_runs(
    sweep: Mapping[str, Any],
    cli_overrides: Sequence[str],
    compose: Callable[[list[str]], DictConfig],
    code_version: str | None = None,
    vmapped: bool = False,
) -> list[PlannedRun]:
    """All runs of ``sweep`` in execution order (task, then optimizer, then seed), each with
    ``code_version`` in its identity and marked ``vmapped`` when seeds train together."""
    for key in AXES.values():
        if not sweep.get(key):
            raise SweepConfigError(f"sweep.{key} is empty: nothing to run")
    chosen = {override_key(o): o.split("=", 1)[1] for o in cli_overrides if "=" in o}
    tasks = _arms("tasks", sweep["tasks"])
    if "task" in chosen:
        tasks = [a for a in tasks if a.name == chosen["task"]] or [
            Arm(chosen["task"], {}, chosen["task"])]
    optimizers = _arms("optimizers", sweep["optimizers"])
    if "optimizer" in chosen:
        optimizers = [a for a in optimizers if a.name == chosen["optimizer"]] or [
            Arm(chosen["optimizer"], {}, chosen["optimizer"])]
    try:
        seeds = [int(chosen["seed"])] if "seed" in chosen else [int(s) for s in sweep["seeds"]]
    except ValueError as exc:
        raise SweepConfigError(f"seed: expected integers ({exc})") from exc
    passthrough = [o for o in cli_overrides if override_key(o) not in AXES
                   and not override_key(o).startswith(("hydra.", "hydra/"))]
    cli_keys = {override_key(o) for o in passthrough}
    custom_target = "optimizer._target_" in cli_keys

    def arm_overrides(group: str, arm: Arm) -> list[str]:
        return [f"{group}={arm.name}"] + [f"{group}.{k}={_value(v)}" for k, v in
                                           arm.hparams.items() if f"{group}.{k}" not in cli_keys]

    runs = []
    for task in tasks:
        for opt in optimizers:
            for seed in seeds:
                overrides = [*arm_overrides("optimizer", opt), *arm_overrides("task", task),
                             f"seed={seed}", *passthrough]
                config = compose(overrides)
                label = str(config.optimizer["_target_"]).rsplit(".", 1)[-1] if custom_target \
                    else opt.label
                runs.append(PlannedRun(label, task.label, seed, tuple(overrides), config,
                                       "" if custom_target else opt.name, code_version,
                                       vmapped))
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise SweepConfigError("the sweep plans the same run twice (identical configs)")
    return runs


def seed_groups(runs: Sequence[PlannedRun]) -> list[list[PlannedRun]]:
    """``runs`` grouped by everything but the seed, in order of first appearance."""
    groups: dict[str, list[PlannedRun]] = {}
    for planned in runs:
        groups.setdefault(planned.seed_group, []).append(planned)
    return list(groups.values())


def shard(items: Sequence[Any], index: int, count: int) -> list[Any]:
    """Shard ``index`` of ``count``: every count-th item from the index-th, so that shards of
    one plan are disjoint, cover it, and are near equal in size."""
    return list(items[index::count])
