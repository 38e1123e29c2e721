"""The parametric image-MLP family: seeded, in its ranges, and buildable."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks import family, num_params


def test_same_seed_same_config():
    """A seed always draws the same config; different seeds draw different ones."""
    first = family.sample_image_mlp_configs(0, 20)
    assert first == family.sample_image_mlp_configs(0, 20)
    assert family.sample_image_mlp_config(5) == first[5]
    assert len({str(c) for c in first}) == 20


def test_configs_lie_in_their_ranges():
    """Sizes in their ranges; log-uniform draws put about half of them below the geometric
    midpoint; every depth 0-4 appears."""
    configs = family.sample_image_mlp_configs(0, 400)
    depths = [len(c["hidden_sizes"]) for c in configs]
    assert set(depths) == {0, 1, 2, 3, 4}
    widths = [c["hidden_sizes"][0] for c in configs if c["hidden_sizes"]]
    for values, (low, high) in ((widths, family.HIDDEN_SIZE_RANGE),
                                ([c["image_size"] for c in configs], family.IMAGE_SIZE_RANGE),
                                ([c["batch_size"] for c in configs], family.BATCH_SIZE_RANGE)):
        assert low <= min(values) and max(values) <= high
        below = np.mean(np.asarray(values) < math.sqrt(low * high))
        assert 0.35 < below < 0.65


def test_sampled_task_builds_with_its_config():
    """The built task has the drawn batch size and the parameter count of its sizes."""
    config = family.sample_image_mlp_config(4)
    task = family.sample_image_mlp(4)
    sizes = [config["image_size"] ** 2, *config["hidden_sizes"], 10]
    assert task.batch_size == config["batch_size"]
    assert num_params(task) == sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def test_bad_seed_is_rejected():
    with pytest.raises(ValueError, match="seed=-1"):
        family.sample_image_mlp_config(-1)
