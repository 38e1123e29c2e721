"""small_fc_lopt variants in a runs table: each row's design settings from its ``opt_*``
columns, what differs from the default design, and its number of input features."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

ARCHITECTURE = "small_fc_lopt"
# Settings that change cost or behaviour, not the design: left out of variant labels.
NOT_DESIGN = ("path", "exp_mult", "step_mult")


def _missing(value: Any) -> bool:
    """Whether a stored setting is absent (None or NaN; a sequence never is)."""
    return not isinstance(value, (list, tuple, np.ndarray)) and (value is None or pd.isna(value))


def design(row: pd.Series) -> dict:
    """The small_fc_lopt Config fields a row sets, from its opt_* columns."""
    from optimizers.learned.small_fc_lopt import Config

    fields = {f.name for f in dataclasses.fields(Config)}
    out = {}
    for name in fields:
        value = row.get(f"opt_{name}")
        if not _missing(value):
            out[name] = _as_field(name, value)
    return out


def _as_field(name: str, value: Any) -> Any:
    """``value`` as Config field ``name`` holds it: sequences (lists, arrays from Parquet list
    columns) as tuples of Python values, numpy scalars as Python ones, and integer settings
    that came back as floats (from a column or struct with gaps) as ints."""
    from optimizers.learned.small_fc_lopt import Config

    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(np.asarray(value).tolist())
    value = value.item() if isinstance(value, np.generic) else value
    kind = type(getattr(Config(), name, None))
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def changed_settings(settings: dict) -> tuple[str, ...]:
    """The design settings (not ``NOT_DESIGN``) in ``settings`` that differ from the
    default design, sorted."""
    from optimizers.learned.small_fc_lopt import Config

    default, config = Config(), _config(settings)
    return tuple(k for k in sorted(settings)
                 if k not in NOT_DESIGN and getattr(config, k) != getattr(default, k))


def change_label(settings: dict) -> str:
    """What ``settings`` change from the default design, as ``key=value, ...`` in YAML's
    spelling, or "default"."""
    config = _config(settings)
    def yaml(value: Any) -> str:
        if isinstance(value, tuple):
            return "[" + ", ".join(yaml(v) for v in value) + "]"
        return str(value).lower() if isinstance(value, bool) else str(value)

    return ", ".join(f"{k}={yaml(getattr(config, k))}"
                     for k in changed_settings(settings)) or "default"


def _config(settings: dict):
    from optimizers.learned.small_fc_lopt import Config

    return Config(**{k: _as_field(k, v) for k, v in settings.items()})


def variants(runs: pd.DataFrame) -> pd.DataFrame:
    """The small_fc_lopt rows with ``change`` (what differs from the default design, or
    "default"), ``changed`` (the names of those settings), ``num_inputs`` (accumulator + time
    features), ``path_setting`` (the configured execution path) and ``exec_path`` (the path it
    ran: ``auto`` resolved as the code resolves it, which picks stacked for networks too wide
    to unroll)."""
    from optimizers.learned.common import time_features
    from optimizers.learned.small_fc_lopt import Config, num_features, resolve_path

    arch = runs.get("opt_architecture", pd.Series(index=runs.index, dtype=object))
    rows = runs[arch == ARCHITECTURE].copy()
    changes, changed, inputs, paths, settings_paths = [], [], [], [], []
    for _, row in rows.iterrows():
        settings = design(row)
        config = Config(**settings)
        keys = changed_settings(settings)
        changes.append(change_label(settings))
        changed.append(keys)
        inputs.append(num_features(config) + (len(time_features(0)) if config.use_time else 0))
        settings_paths.append(config.path)
        paths.append(resolve_path(config))
    rows["change"], rows["changed"], rows["num_inputs"] = changes, changed, inputs
    rows["path_setting"], rows["exec_path"] = settings_paths, paths
    return rows
