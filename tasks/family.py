"""Parametric task families, drawn from a seed: image MLPs, convnets and MLP autoencoders (for
meta-training distributions and robustness sweeps).

Default image-MLP ranges after the reference code base's image-MLP family (REFERENCE.md):
hidden size log-uniform in [8, 128] (one width for all layers), 0 to 4 hidden layers, image size
log-uniform in [4, 32], batch size log-uniform in [4, 512], on Fashion-MNIST. Every range is an
argument, so a meta-training family can be drawn from a budget-sized corner of the space.
A family is a list of entries, each a sampler with a member count, or one fixed task config,
with a sampling weight (``draw_family``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tasks.base import Task
from tasks.image_mlp import image_mlp

HIDDEN_SIZE_RANGE = (8, 128)
HIDDEN_LAYERS_RANGE = (0, 4)
IMAGE_SIZE_RANGE = (4, 32)
BATCH_SIZE_RANGE = (4, 512)
CHANNELS_RANGE = (4, 32)
CONV_LAYERS_RANGE = (1, 3)
CODE_SIZE_RANGE = (4, 32)
_PREFIX = {"fashion_mnist": "fmnist", "mnist": "mnist", "cifar10": "cifar10"}
Range = Sequence[int]


def _log_uniform_int(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer in [low, high] whose logarithm is uniform (rounded, then kept in range)."""
    value = math.exp(rng.uniform(math.log(low), math.log(high)))
    return int(min(high, max(low, round(value))))


def _uniform_int(rng: np.random.Generator, low: int, high: int) -> int:
    return int(rng.integers(low, high + 1))


def _rng(seed: int, salt: int, **ranges: Range) -> np.random.Generator:
    """A stream of its own (not NumPy's global), after checking the seed and every range."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected a non-negative integer")
    for name, bounds in ranges.items():
        low, high = bounds
        if not 0 <= low <= high or (low == 0 and name != "hidden_layers"):
            raise ValueError(f"{name}={list(bounds)}: expected [low, high] with "
                             f"{'0' if name == 'hidden_layers' else '1'} <= low <= high")
    return np.random.default_rng([int(seed), salt])


def sample_image_mlp_config(seed: int, dataset: str = "fashion_mnist",
                            hidden_size: Range = HIDDEN_SIZE_RANGE,
                            hidden_layers: Range = HIDDEN_LAYERS_RANGE,
                            image_size: Range = IMAGE_SIZE_RANGE,
                            batch_size: Range = BATCH_SIZE_RANGE) -> dict[str, Any]:
    """The Hydra config (``_target_`` and arguments) of the image MLP drawn by ``seed``; the
    same seed and ranges always give the same config."""
    rng = _rng(seed, 0x1A6E, hidden_size=hidden_size, hidden_layers=hidden_layers,
               image_size=image_size, batch_size=batch_size)
    layers = _uniform_int(rng, *hidden_layers)
    width = _log_uniform_int(rng, *hidden_size)
    size = _log_uniform_int(rng, *image_size)
    batch = _log_uniform_int(rng, *batch_size)
    return {
        "_target_": "tasks.image_mlp.image_mlp",
        "name": f"image_mlp_family_{seed}",
        "dataset": dataset,
        "image_size": size,
        "hidden_sizes": [width] * layers,
        "batch_size": batch,
        "eval_batch_size": 2500,
        "data_dir": None,
    }


def sample_convnet_config(seed: int, dataset: str = "fashion_mnist",
                          channels: Range = CHANNELS_RANGE, layers: Range = CONV_LAYERS_RANGE,
                          image_size: Range = (8, 16),
                          batch_size: Range = (16, 128)) -> dict[str, Any]:
    """A strided 3x3 convnet (tasks/conv.py): channels log-uniform per layer, non-decreasing."""
    rng = _rng(seed, 0xC0A7, channels=channels, layers=layers, image_size=image_size,
               batch_size=batch_size)
    depth = _uniform_int(rng, *layers)
    widths = sorted(_log_uniform_int(rng, *channels) for _ in range(depth))
    return {
        "_target_": "tasks.conv.convnet",
        "name": f"convnet_family_{seed}",
        "dataset": dataset,
        "image_size": _log_uniform_int(rng, *image_size),
        "channels": widths,
        "stride": 2,
        "batch_size": _log_uniform_int(rng, *batch_size),
        "eval_batch_size": 1000,
        "data_dir": None,
    }


def sample_autoencoder_config(seed: int, dataset: str = "fashion_mnist",
                              hidden_size: Range = (16, 128), code_size: Range = CODE_SIZE_RANGE,
                              image_size: Range = (4, 16),
                              batch_size: Range = (16, 128)) -> dict[str, Any]:
    """An MLP autoencoder (tasks/autoencoder.py) image -> hidden -> code -> hidden -> image."""
    rng = _rng(seed, 0xAE16, hidden_size=hidden_size, code_size=code_size,
               image_size=image_size, batch_size=batch_size)
    hidden = _log_uniform_int(rng, *hidden_size)
    return {
        "_target_": "tasks.autoencoder.mlp_autoencoder",
        "name": f"autoencoder_family_{seed}",
        "dataset": dataset,
        "image_size": _log_uniform_int(rng, *image_size),
        "hidden_sizes": [hidden, min(hidden, _log_uniform_int(rng, *code_size)), hidden],
        "batch_size": _log_uniform_int(rng, *batch_size),
        "eval_batch_size": 2500,
        "data_dir": None,
    }


SAMPLERS: dict[str, Callable[..., dict[str, Any]]] = {
    "image_mlp": sample_image_mlp_config,
    "convnet": sample_convnet_config,
    "mlp_autoencoder": sample_autoencoder_config,
}


def sample_image_mlp_configs(seed: int, count: int,
                             dataset: str = "fashion_mnist") -> list[dict[str, Any]]:
    """``count`` image MLPs, those of seeds seed, seed + 1, ...: a task list for a sweep."""
    if count < 0:
        raise ValueError(f"count={count}: must be non-negative")
    return [sample_image_mlp_config(seed + i, dataset) for i in range(count)]


def sample_image_mlp(seed: int = 0, dataset: str = "fashion_mnist",
                     data_dir: str | None = None) -> Task:
    """The family member drawn by ``seed``, built (its data loaded)."""
    config = sample_image_mlp_config(seed, dataset)
    config.pop("_target_")
    return image_mlp(**{**config, "data_dir": data_dir})


def describe(config: Mapping[str, Any]) -> str:
    """A name that says what the task is, e.g. ``fmnist8_mlp32x32_b64`` or
    ``fmnist16_conv8-16_b32``: family members are told apart by their settings, not seeds."""
    prefix = f"{_PREFIX.get(config['dataset'], config['dataset'])}{config['image_size']}"
    target = config["_target_"].rsplit(".", 1)[-1]
    if target == "convnet":
        body = "conv" + "-".join(map(str, config["channels"]))
    elif target == "mlp_autoencoder":
        body = "ae" + "-".join(map(str, config["hidden_sizes"]))
    else:
        body = "mlp" + ("x".join(map(str, config["hidden_sizes"])) or "linear")
    return f"{prefix}_{body}_b{config['batch_size']}"


@dataclasses.dataclass(frozen=True)
class Member:
    """One task of a family: its Hydra config and its share of the sampling weight."""

    config: dict[str, Any]
    weight: float

    @property
    def name(self) -> str:
        return self.config["name"]


def identity(config: Mapping[str, Any]) -> tuple:
    """What makes two task configs the same task (everything but names and evaluation sizes)."""
    ignored = ("name", "eval_batch_size", "data_dir", "eval_windows")
    return tuple(sorted((k, repr(v)) for k, v in config.items() if k not in ignored))


def draw_family(entries: Sequence[Mapping[str, Any]], seed: int,
                exclude: Sequence[Member] = ()) -> list[Member]:
    """The members of a family. Each entry is ``{sampler: <name in SAMPLERS>, count: n,
    weight: w, <range or dataset arguments>}`` (n distinct members sharing weight w) or
    ``{config: <task config>, weight: w}``; members are named by ``describe``. Sampled members
    are never tasks of ``exclude`` (a validation family drawn beside a training one)."""
    members: list[Member] = []
    seen: set[tuple] = {identity(m.config) for m in exclude}
    for index, raw in enumerate(entries):
        entry = dict(raw)
        weight = float(entry.pop("weight", 1.0))
        if not weight > 0:
            raise ValueError(f"family[{index}].weight={weight}: must be positive")
        if "config" in entry:
            configs = [dict(entry.pop("config"))]
        else:
            kind, count = entry.pop("sampler", None), int(entry.pop("count", 1))
            if kind not in SAMPLERS:
                raise ValueError(f"family[{index}].sampler={kind!r}: expected one of "
                                 f"{sorted(SAMPLERS)} (or a `config` entry)")
            if count < 1:
                raise ValueError(f"family[{index}].count={count}: must be at least 1")
            configs = _distinct(SAMPLERS[kind], count, seed * 1000 + index * 100, entry, seen,
                                f"family[{index}]")
            configs = [{**c, "name": describe(c)} for c in configs]
        for config in configs:
            seen.add(identity(config))
        members += [Member(c, weight / len(configs)) for c in configs]
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ValueError(f"family members share names: {sorted(names)}")
    return members


def _distinct(sampler: Callable[..., dict[str, Any]], count: int, first_seed: int,
              arguments: Mapping[str, Any], seen: set[tuple], where: str) -> list[dict]:
    """``count`` configs no other member has, from seeds first_seed, first_seed + 1, ..."""
    configs: list[dict] = []
    for seed in range(first_seed, first_seed + 50 * count):
        config = sampler(seed, **arguments)
        if identity(config) not in seen | {identity(c) for c in configs}:
            configs.append(config)
            if len(configs) == count:
                return configs
    raise ValueError(f"{where}: the ranges give fewer than {count} distinct tasks")
