"""Inner problems for meta-training: small tasks whose data live on the device, so that a whole
truncated unroll (batches included) is one compiled program.

The family is the standard task's (Metz et al. 2022: Fashion-MNIST image MLPs); hidden size,
image size and batch size are drawn per problem from the lists the config gives.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tasks.data import fashion_mnist
from tasks.mlp import apply_mlp, init_mlp, softmax_cross_entropy


class InnerProblem(NamedTuple):
    """A training problem as pure, jit-friendly functions.

    ``sample_batch(key)`` draws a training batch on the device; ``loss(params, batch)`` is the
    mean training loss; ``clip_loss`` bounds the meta-loss (1.5 ln(num_classes) for
    classification, as in the reference code base's normalisation).
    """

    name: str
    init: Callable[[jax.Array], Any]
    loss: Callable[[Any, Any], jax.Array]
    sample_batch: Callable[[jax.Array], Any]
    clip_loss: float


@dataclasses.dataclass(frozen=True)
class ProblemSpec:
    """One member of the image-MLP family."""

    image_size: int = 8
    hidden_sizes: tuple[int, ...] = (32,)
    batch_size: int = 128

    @property
    def name(self) -> str:
        hidden = "x".join(map(str, self.hidden_sizes)) or "linear"
        return f"fmnist{self.image_size}_mlp{hidden}_b{self.batch_size}"


def sample_specs(seed: int, count: int, image_sizes: Sequence[int],
                 hidden_sizes: Sequence[int], batch_sizes: Sequence[int],
                 depths: Sequence[int] = (1,)) -> list[ProblemSpec]:
    """``count`` distinct family members drawn with ``seed`` (fewer if the lists allow fewer)."""
    for name, values in (("image_sizes", image_sizes), ("hidden_sizes", hidden_sizes),
                         ("batch_sizes", batch_sizes), ("depths", depths)):
        if not values or any(int(v) < (0 if name == "depths" else 1) for v in values):
            raise ValueError(f"meta.family.{name}={list(values)}: need a non-empty list of "
                             "positive sizes")
    combos = math.prod(map(len, (image_sizes, hidden_sizes, batch_sizes, depths)))
    if count < 1:
        raise ValueError(f"meta.family.num_problems={count}: need at least 1")
    rng = np.random.default_rng(seed)
    specs: list[ProblemSpec] = []
    while len(specs) < min(count, combos):
        spec = ProblemSpec(image_size=int(rng.choice(image_sizes)),
                           hidden_sizes=(int(rng.choice(hidden_sizes)),) * int(rng.choice(depths)),
                           batch_size=int(rng.choice(batch_sizes)))
        if spec not in specs:
            specs.append(spec)
    return specs


@functools.lru_cache(maxsize=8)
def _device_split(image_size: int, split: str) -> tuple[jax.Array, jax.Array]:
    images, labels = fashion_mnist.load(split, image_size)
    return (jnp.asarray(images.reshape(len(images), -1), jnp.float32),
            jnp.asarray(labels, jnp.int32))


def fashion_mnist_problem(spec: ProblemSpec, split: str = "train") -> InnerProblem:
    """The image MLP ``spec`` on real Fashion-MNIST (``split`` of the data set), batches drawn
    uniformly with replacement on the device."""
    images, labels = _device_split(spec.image_size, split)
    sizes = [spec.image_size ** 2, *spec.hidden_sizes, fashion_mnist.NUM_CLASSES]

    def sample_batch(key):
        index = jax.random.randint(key, (spec.batch_size,), 0, images.shape[0])
        return {"image": images[index], "label": labels[index]}

    def loss(params, batch):
        return softmax_cross_entropy(apply_mlp(params, batch["image"]), batch["label"])

    return InnerProblem(name=spec.name, init=functools.partial(init_mlp, sizes=sizes),
                        loss=loss, sample_batch=sample_batch,
                        clip_loss=1.5 * math.log(fashion_mnist.NUM_CLASSES))


def quadratic_problem(dim: int = 8, batch_size: int = 4, noise: float = 0.1) -> InnerProblem:
    """A noisy quadratic bowl: a smooth inner problem for tests of the estimators."""
    scales = jnp.linspace(0.5, 2.0, dim)

    def init(key):
        return {"x": jax.random.normal(key, (dim,))}

    def sample_batch(key):
        return {"shift": noise * jax.random.normal(key, (batch_size, dim))}

    def loss(params, batch):
        return 0.5 * jnp.mean(jnp.sum(scales * (params["x"] - batch["shift"]) ** 2, axis=-1))

    return InnerProblem(name=f"quadratic{dim}", init=init, loss=loss,
                        sample_batch=sample_batch, clip_loss=1e3)
