"""Learned optimizers: plain meta-parameters ``theta`` and two pure functions per architecture,
``init_meta(key, config) -> theta`` and ``to_optax(theta, config) -> optax transformation``.

Each architecture is a module here exposing ``NAME``, ``Config`` (a frozen dataclass of its
settings: the design space), ``init_meta`` and ``to_optax``. ``learned_optimizer`` is the
factory the Hydra configs target: it builds the config, loads or initialises ``theta`` and
returns the optax object, which is all the runner and the sweep ever see.
``load_learned_optimizer("small_fc_lopt_family")`` is the same for a user's own training loop:
a shipped (or saved) checkpoint as an optax transformation, its settings read from the file.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import jax
import optax

from optimizers.learned import checkpoint as ckpt

ARCHITECTURES = {
    "small_fc_lopt": "optimizers.learned.small_fc_lopt",
    "mlp_lopt": "optimizers.learned.mlp_lopt",
    "rnn_mlp_lopt": "optimizers.learned.rnn_mlp_lopt",
    "nn_adam": "optimizers.learned.nn_adam",
}


def get_architecture(name: str) -> ModuleType:
    """The module implementing architecture ``name``."""
    if name not in ARCHITECTURES:
        raise ValueError(
            f"optimizer.architecture={name!r}: expected one of {sorted(ARCHITECTURES)}")
    return importlib.import_module(ARCHITECTURES[name])


def make_config(name: str, **settings: Any) -> Any:
    """The architecture's Config from keyword settings (lists become tuples)."""
    module = get_architecture(name)
    fields = {f.name for f in dataclasses.fields(module.Config)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise ValueError(f"optimizer.{unknown[0]}: not a setting of {name}; "
                         f"its settings are {sorted(fields)}")
    values = {k: tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v
              for k, v in settings.items()}
    return module.Config(**values)


def load_or_init(name: str, config: Any, checkpoint: str | None, seed: int = 0) -> Any:
    """Meta-parameters from ``checkpoint``, or freshly initialised from ``seed`` if it is None."""
    module = get_architecture(name)
    fresh = module.init_meta(jax.random.key(seed), config)
    if checkpoint is None:
        return fresh
    return ckpt.load(checkpoint, name, config, like=fresh)


def learned_optimizer(architecture: str, checkpoint: str | None = None, seed: int = 0,
                      **settings: Any) -> optax.GradientTransformationExtraArgs:
    """Hydra factory: a learned optimizer as an optax transformation.

    ``checkpoint`` None means freshly initialised (untrained) meta-parameters: fine for
    measuring compute and memory, meaningless for performance.
    """
    config = make_config(architecture, **settings)
    theta = load_or_init(architecture, config, checkpoint, seed)
    return get_architecture(architecture).to_optax(theta, config)


def shipped_checkpoints() -> list[str]:
    """Names of the meta-trained checkpoints shipped with the package."""
    return sorted(p.stem for p in ckpt.SHIPPED_DIR.glob("*.npz"))


def load_learned_optimizer(checkpoint: str, **execution: Any
                           ) -> optax.GradientTransformationExtraArgs:
    """A meta-trained learned optimizer as an optax transformation, from a shipped checkpoint's
    name (``shipped_checkpoints()``) or a checkpoint file; the architecture and its settings
    come from the file. ``execution`` may choose how the update is computed (``path=...``),
    never what it computes. Pass the loss as ``update(grads, state, params, value=loss)``
    where the optimizer reads it; the others ignore it."""
    unknown = sorted(set(execution) - set(ckpt.EXECUTION_SETTINGS))
    if unknown:
        raise ValueError(f"{unknown[0]}={execution[unknown[0]]!r}: only execution settings "
                         f"{list(ckpt.EXECUTION_SETTINGS)} may be given; the others are the "
                         "checkpoint's")
    header = ckpt.read_header(ckpt.resolve(checkpoint))
    name = header["architecture"]
    fields = {f.name for f in dataclasses.fields(get_architecture(name).Config)}
    settings = {k: v for k, v in header["config"].items()
                if k in fields and k not in ckpt.EXECUTION_SETTINGS}
    return learned_optimizer(name, checkpoint=checkpoint, **{**settings, **execution})
