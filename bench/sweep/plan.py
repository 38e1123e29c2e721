"""Expand a sweep preset into the list of runs it stands for, each a fully composed config.

A preset names tasks, seeds and optimizers; a task or optimizer may carry one setting (a
mapping) or a list of them (a grid); the runs are their product. Every run's config is composed
by Hydra from the same config tree as a single run would be, the preset's settings merged in as
structured config and the user's command-line overrides applied last, so
``optimizer.b1=0.95`` on the command line reaches every run. A command-line choice of an axis
(``optimizer=adam``, ``task=synthetic``, ``seed=3``) narrows the sweep to it.

``sweep.tuned`` maps an optimizer to a table of tuned learning rates (the tuned-Adam grid that
``bench.analysis.normalise`` writes): each task then gets one more arm, that optimizer at the
learning rate the table marks best for the task, labelled ``<optimizer>(tuned)`` and recorded
with the table's path (the ``tuned_from`` column).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from bench.sweep.compose import CachedCompose
from bench.sweep.settings import SweepConfigError
from bench.train.spec import RunSpec

AXES = {"optimizer": "optimizers", "task": "tasks", "seed": "seeds"}


def override_key(override: str) -> str:
    """The config key an override string sets: ``+a.b=1`` -> ``a.b``."""
    return override.split("=", 1)[0].lstrip("+~")


class Arm(NamedTuple):
    """One setting of a config group: its config name, settings, display label, the settings
    that vary between the arms of its name (empty for a name with one setting) and, for a tuned
    arm, the table its learning rate came from."""

    name: str
    hparams: Mapping[str, Any]
    label: str
    varying: Mapping[str, Any] = {}
    tuned_from: str | None = None


def _arms(axis: str, entries: Mapping[str, Any] | Sequence[str]) -> list[Arm]:
    """The arms of an axis: a list of names, or a mapping from a name to one setting (a mapping
    of config values) or a list of settings (a grid). A name with several settings is labelled with
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
            label, varying = str(name), {}
            if len(grid) > 1:
                varying = hparams
                label += "(" + ",".join(f"{k}={_label(v)}" for k, v in hparams.items()) + ")"
            arms.append(Arm(str(name), hparams, label, varying))
    return arms


def _label(value: Any) -> str:
    return json.dumps(value)


def tuned_tables(tuned: Mapping[str, str]) -> dict[str, tuple[str, pd.DataFrame]]:
    """Each optimizer of ``sweep.tuned`` with its table of tuned rates, read once per plan."""
    tables = {}
    for name, table in tuned.items():
        if not Path(table).is_file():
            raise SweepConfigError(f"sweep.tuned.{name}={table}: no such table")
        tables[str(name)] = (str(table), pd.read_csv(table))
    return tables


def tuned_arms(tables: Mapping[str, tuple[str, pd.DataFrame]], task: str) -> list[Arm]:
    """For each tuned optimizer, its arm at the learning rate its table marks best for
    ``task``; a SweepConfigError naming the task where the table has none."""
    arms = []
    for name, (table, grid) in tables.items():
        best = grid[(grid["task"] == task) & grid["best"]]
        if best.empty:
            raise SweepConfigError(
                f"sweep.tuned.{name}: {table} has no tuned learning rate for task {task!r}; "
                "add the task to conf/sweep/tune_adam.yaml, run `make sweep SWEEP=tune_adam` "
                "and `python -m bench.analysis.normalise results/tune_adam`")
        rate = {"learning_rate": float(best["learning_rate"].iloc[0])}
        arms.append(Arm(name, rate, f"{name}(tuned)", rate, table))
    return arms


def plan_runs(
    sweep: Mapping[str, Any],
    cli_overrides: Sequence[str],
    compose: CachedCompose,
    code_version: str | None = None,
    vmapped: bool = False,
) -> list[RunSpec]:
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
    passthrough = tuple(o for o in cli_overrides if override_key(o) not in AXES
                        and not override_key(o).startswith(("hydra.", "hydra/")))
    custom_target = "optimizer._target_" in {override_key(o) for o in passthrough}

    tables = tuned_tables(sweep.get("tuned") or {})
    runs = []
    for task in tasks:
        tuned = [a for a in tuned_arms(tables, task.name)
                 if "optimizer" not in chosen or a.name == chosen["optimizer"]]
        for opt in optimizers + tuned:
            choices = [f"optimizer={opt.name}", f"task={task.name}"]
            for seed in seeds:
                config = compose(choices, {"optimizer": opt.hparams, "task": task.hparams,
                                           "seed": seed})
                name = str(config.optimizer["_target_"]).rsplit(".", 1)[-1] if custom_target \
                    else opt.name
                runs.append(RunSpec(
                    optimizer=name if custom_target else opt.label, task=task.label, seed=seed,
                    overrides=(*choices, *passthrough), config=config, optimizer_name=name,
                    arm=opt.varying, optimizer_config="" if custom_target else opt.name,
                    code_version=code_version, vmapped=vmapped, tuned_from=opt.tuned_from))
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise SweepConfigError("the sweep plans the same run twice (identical configs)")
    return runs


def seed_groups(runs: Sequence[RunSpec]) -> list[list[RunSpec]]:
    """``runs`` grouped by everything but the seed, in order of first appearance."""
    groups: dict[str, list[RunSpec]] = {}
    for planned in runs:
        groups.setdefault(planned.seed_group, []).append(planned)
    return list(groups.values())


def shard(items: Sequence[Any], index: int, count: int) -> list[Any]:
    """Shard ``index`` of ``count``: every count-th item from the index-th, so that shards of
    one plan are disjoint, cover it, and are near equal in size."""
    return list(items[index::count])
