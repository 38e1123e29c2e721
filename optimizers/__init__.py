"""Optimizers: every one is an optax GradientTransformation built from a Hydra config."""

from optimizers.build import build_optimizer, check_hyperparameters

__all__ = ["build_optimizer", "check_hyperparameters"]
