"""Compose each run's config with Hydra from the same config tree as a single run, fast.

The config tree is the repository's ``conf/`` plus every folder of ``hydra.searchpath``, so
tasks, optimizers and presets defined outside the repository compose like the repository's own.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from bench.sweep.settings import SweepConfigError

SEARCHPATH_KEY = "hydra.searchpath"


def config_groups(conf_dirs: Sequence[Path]) -> set[str]:
    """The config groups under ``conf_dirs`` (folders holding YAML files), as Hydra names them."""
    return {str(p.parent.relative_to(conf)) for conf in conf_dirs if conf.is_dir()
            for p in conf.rglob("*.yaml") if p.parent != conf}


def searchpath_dirs(searchpath: Sequence[str]) -> list[Path]:
    """The local folders of ``hydra.searchpath`` entries (``file://`` or plain paths)."""
    dirs = []
    for entry in searchpath:
        entry = str(entry)
        if entry.startswith("pkg://"):
            continue
        dirs.append(Path(entry.removeprefix("file://")))
    return dirs


class CachedCompose:
    """Composes a run's config: Hydra once per set of config-group choices, then structured
    settings merged into a copy, then the command line's plain ``key=value`` overrides.

    A full Hydra compose takes about 0.1 s; a sweep of hundreds of runs varies only values
    (learning rates, seeds) over a few group choices, so planning would otherwise dominate a
    rerun that has nothing to do. Group choices (``optimizer=adam``), additions (``+k=v``),
    deletions (``~k``) and package overrides go through Hydra as they are, with the search
    path's folders (``searchpath``); the command line's overrides are applied last, so they
    win over a preset's settings.
    """

    def __init__(self, compose: Callable[[list[str]], DictConfig], groups: set[str],
                 cli_overrides: Sequence[str], searchpath: Sequence[str] = ()) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self._compose, self._composed = compose, {}
        self.hydra_overrides: list[str] = (
            [f"{SEARCHPATH_KEY}=[{','.join(json.dumps(str(p)) for p in searchpath)}]"]
            if searchpath else [])
        self._cli_hydra: list[Any] = []
        self._cli_values: list[Any] = []
        for override in OverridesParser.create().parse_overrides(list(cli_overrides)):
            plain = (override.is_add() is False and override.is_delete() is False
                     and override.is_force_add() is False and override.package is None
                     and override.key_or_group not in groups)
            if override.key_or_group.startswith(("hydra.", "hydra/")):
                continue
            else:
                (self._cli_values if plain else self._cli_hydra).append(override)
        # Keys the command line sets, adds or deletes: a preset's setting of one gives way.
        self.cli_keys = {o.key_or_group for o in (*self._cli_values, *self._cli_hydra)}

    def __call__(self, choices: Sequence[str], settings: Mapping[str, Any]) -> DictConfig:
        """The config of ``choices`` (group choices such as ``optimizer=adam``) with
        ``settings`` (``{"optimizer": {...}, "task": {...}, "seed": 3}``) merged in."""
        key = (*choices, *(o.input_line for o in self._cli_hydra), *self.hydra_overrides)
        if key not in self._composed:
            self._composed[key] = self._compose(list(key))
        config = copy.deepcopy(self._composed[key])
        for section, values in settings.items():
            try:
                if isinstance(values, Mapping):
                    values = {k: v for k, v in values.items()
                              if f"{section}.{k}" not in self.cli_keys}
                    config[section] = OmegaConf.merge(config[section], values)
                else:
                    with open_dict(config):
                        config[section] = values
            except Exception as exc:  # OmegaConf's errors name the key
                raise SweepConfigError(f"could not set {section} to {values!r}: {exc}") from exc
        for override in self._cli_values:
            try:
                OmegaConf.update(config, override.key_or_group, override.value(), merge=False)
            except Exception as exc:
                raise SweepConfigError(f"could not apply {override.input_line}: {exc}") from exc
        return config
