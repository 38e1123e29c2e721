"""Build an optimizer from its config, checking hyperparameters first.

A config is a Hydra ``_target_`` mapping onto any factory that returns an optax
``GradientTransformation`` (``optax.adam``, ``optax.yogi``, a learned optimizer's factory...).
Every optimizer comes back as a ``GradientTransformationExtraArgs`` so the runner can pass the
loss (``value=``) to those that use it; the others ignore it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import hydra.utils
import optax
from omegaconf import DictConfig, OmegaConf

# Hyperparameters with a known valid range; anything else is passed through unchecked.
_POSITIVE = ("learning_rate",)
_NON_NEGATIVE = ("eps", "weight_decay", "initial_accumulator_value", "momentum")
_UNIT_INTERVAL = ("b1", "b2", "decay", "decay_rate")


class OptimizerConfigError(ValueError):
    """An optimizer config that cannot be built; the message names the key and value."""


def _as_dict(cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg)


def check_hyperparameters(cfg: Mapping[str, Any] | DictConfig, prefix: str = "optimizer") -> None:
    """Raise ``OptimizerConfigError`` naming the first hyperparameter out of its range."""
    values = _as_dict(cfg)
    if "_target_" not in values:
        raise OptimizerConfigError(f"{prefix} has no _target_ (the optax factory to call)")

    def number(key: str) -> float | None:
        value = values.get(key)
        if value is None or isinstance(value, Mapping):  # unset, or a schedule config
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptimizerConfigError(f"{prefix}.{key}={value!r}: expected a number")
        if not math.isfinite(value):
            raise OptimizerConfigError(f"{prefix}.{key}={value!r}: expected a finite number")
        return float(value)

    for key in _POSITIVE:
        value = number(key)
        if value is not None and value <= 0:
            raise OptimizerConfigError(f"{prefix}.{key}={value:g}: must be positive")
    for key in _NON_NEGATIVE:
        value = number(key)
        if value is not None and value < 0:
            raise OptimizerConfigError(f"{prefix}.{key}={value:g}: must be >= 0")
    for key in _UNIT_INTERVAL:
        value = number(key)
        if value is not None and not 0 <= value <= 1:
            raise OptimizerConfigError(f"{prefix}.{key}={value:g}: must lie in [0, 1]")


def build_optimizer(
    cfg: Mapping[str, Any] | DictConfig, prefix: str = "optimizer"
) -> optax.GradientTransformationExtraArgs:
    """Check and instantiate an optimizer config into a ``GradientTransformationExtraArgs``."""
    check_hyperparameters(cfg, prefix)
    values = _as_dict(cfg)
    try:
        tx = hydra.utils.instantiate(values, _convert_="all")  # lists as lists, not ListConfig
    except Exception as exc:  # Hydra wraps import and call errors; keep its message.
        raise OptimizerConfigError(
            f"{prefix}._target_={values['_target_']!r} could not be built: {exc}"
        ) from exc
    if not isinstance(tx, optax.GradientTransformation):
        raise OptimizerConfigError(
            f"{prefix}._target_={values['_target_']!r} returned {type(tx).__name__}, "
            "not an optax GradientTransformation"
        )
    return optax.with_extra_args_support(tx)
