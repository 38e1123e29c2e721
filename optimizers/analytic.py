"""Analytic per-parameter costs of the hand-designed optimizers' updates (float32).

``bytes``: the least memory traffic of one update per parameter, counting each array the update
must read (parameter, gradient, each state buffer) and write (parameter, each state buffer)
once, 4 bytes each. ``flops``: elementwise floating-point operations per parameter, counting
each add, multiply, divide, square root and sign as one, as optax computes them (per-tensor
scalars such as bias corrections are not counted per parameter). Adafactor's entry is for a
large matrix, whose factored statistics (a row and a column vector) add no per-parameter
traffic. The learned optimizers' costs follow from their configs (optimizers/learned/costs.py).
"""

from __future__ import annotations

from typing import NamedTuple


class UpdateCost(NamedTuple):
    bytes: int
    flops: float  # elementwise
    matmul_flops: int = 0  # in matrix products (the learned optimizers' networks)


F32 = 4
UPDATE_COSTS: dict[str, UpdateCost] = {
    # p <- p - lr * g
    "sgd": UpdateCost(bytes=3 * F32, flops=2),
    # m <- g + 0.9 m; p <- p - lr * m
    "sgdm": UpdateCost(bytes=5 * F32, flops=4),
    # m, v moments (3 + 4), bias-corrected m / (sqrt(v) + eps) (2 + 3), p - lr * u (2)
    "adam": UpdateCost(bytes=7 * F32, flops=14),
    # Adam + decoupled weight decay (2)
    "adamw": UpdateCost(bytes=7 * F32, flops=16),
    # AdamW + Nesterov look-ahead of the first moment (3)
    "nadamw": UpdateCost(bytes=7 * F32, flops=19),
    # v <- d v + (1 - d) g^2 (4); g / (sqrt(v) + eps) (3); p - lr * u (2)
    "rmsprop": UpdateCost(bytes=5 * F32, flops=9),
    # v <- v + g^2 (2); g / (sqrt(v) + eps) (3); p - lr * u (2)
    "adagrad": UpdateCost(bytes=5 * F32, flops=7),
    # c <- b1 m + (1 - b1) g (3); sign (1); m <- b2 m + (1 - b2) g (3); p - lr * u (2);
    # weight decay 0 as configured (optax then skips it)
    "lion": UpdateCost(bytes=5 * F32, flops=9),
    # g^2 + eps (2) into the row and column means (2); v = r c / mean(r) (2); g / sqrt(v)
    # (2); the update's RMS for clipping (2) and the clip (1); p - lr * u (2)
    "adafactor": UpdateCost(bytes=3 * F32, flops=13),
}


def update_cost(name: str) -> UpdateCost | None:
    """The analytic cost of optimizer ``name``'s update, or None where none is known."""
    return UPDATE_COSTS.get(name)
