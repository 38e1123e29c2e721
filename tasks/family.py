"""A parametric family of image-MLP tasks, drawn from a seed (for meta-training and
robustness sweeps).

Ranges after the reference code base's image-MLP family (REFERENCE.md): hidden size
log-uniform in [8, 128] (one width for all layers), 0 to 4 hidden layers, image size
log-uniform in [4, 32], batch size log-uniform in [4, 512], on Fashion-MNIST by default.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tasks.base import Task
from tasks.image_mlp import image_mlp

HIDDEN_SIZE_RANGE = (8, 128)
HIDDEN_LAYERS_RANGE = (0, 4)
IMAGE_SIZE_RANGE = (4, 32)
BATCH_SIZE_RANGE = (4, 512)


def _log_uniform_int(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer in [low, high] whose logarithm is uniform (rounded, then kept in range)."""
    value = math.exp(rng.uniform(math.log(low), math.log(high)))
    return int(min(high, max(low, round(value))))


def sample_image_mlp_config(seed: int, dataset: str = "fashion_mnist") -> dict[str, Any]:
    """The Hydra config (``_target_`` and arguments) of the family member drawn by ``seed``;
    the same seed always gives the same config."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected a non-negative integer")
    rng = np.random.default_rng([int(seed), 0x1A6E])  # a stream of its own, not NumPy's global
    layers = int(rng.integers(HIDDEN_LAYERS_RANGE[0], HIDDEN_LAYERS_RANGE[1] + 1))
    width = _log_uniform_int(rng, *HIDDEN_SIZE_RANGE)
    image_size = _log_uniform_int(rng, *IMAGE_SIZE_RANGE)
    batch_size = _log_uniform_int(rng, *BATCH_SIZE_RANGE)
    return {
        "_target_": "tasks.image_mlp.image_mlp",
        "name": f"image_mlp_family_{seed}",
        "dataset": dataset,
        "image_size": image_size,
        "hidden_sizes": [width] * layers,
        "batch_size": batch_size,
        "eval_batch_size": 2500,
        "data_dir": None,
    }


def sample_image_mlp_configs(seed: int, count: int,
                             dataset: str = "fashion_mnist") -> list[dict[str, Any]]:
    """``count`` family members, those of seeds seed, seed + 1, ...: a task list for a sweep
    or a meta-training run."""
    if count < 0:
        raise ValueError(f"count={count}: must be non-negative")
    return [sample_image_mlp_config(seed + i, dataset) for i in range(count)]


def sample_image_mlp(seed: int = 0, dataset: str = "fashion_mnist",
                     data_dir: str | None = None) -> Task:
    """The family member drawn by ``seed``, built (its data loaded)."""
    config = sample_image_mlp_config(seed, dataset)
    config.pop("_target_")
    return image_mlp(**{**config, "data_dir": data_dir})
