"""Optimizer factories used by the tests through Hydra ``_target_`` paths."""

from __future__ import annotations

import optax

FAILURE_MESSAGE = "update deliberately failed by tests.helpers"


def failing_optimizer(message: str = FAILURE_MESSAGE) -> optax.GradientTransformation:
    """A transformation whose ``init`` works and whose ``update`` raises ``RuntimeError``."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del updates, state, params
        raise RuntimeError(message)

    return optax.GradientTransformation(init, update)
