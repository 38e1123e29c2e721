"""Optimizer-state memory is counted exactly, from the state's shapes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench.measure import memory
from tests.conftest import ADAM

SGD = {"_target_": "optax.sgd", "learning_rate": 0.1}
SGDM = {"_target_": "optax.sgd", "learning_rate": 0.1, "momentum": 0.9}


def test_adam_state_is_two_floats_per_param(tiny_run):
    """Adam holds two float32 moments per parameter plus one int32 step counter."""
    summary = tiny_run(ADAM).summary
    assert summary["param_bytes"] == 4 * summary["num_params"]
    assert summary["opt_state_bytes"] == 2 * summary["param_bytes"] + 4
    assert summary["opt_state_floats_per_param"] == 2.0
    assert summary["opt_state_floats_per_param_matrix"] == 2.0
    assert summary["opt_state_floats_per_param_vector"] == 2.0


def test_sgd_has_no_state(tiny_run):
    """Plain SGD keeps no optimizer state."""
    summary = tiny_run(SGD).summary
    assert summary["opt_state_bytes"] == 0
    assert summary["opt_state_floats_per_param"] == 0.0


def test_sgd_momentum_state_is_one_copy_of_params(tiny_run):
    """SGD with momentum 0.9 keeps one float per parameter (the velocity)."""
    summary = tiny_run(SGDM).summary
    assert summary["opt_state_bytes"] == summary["param_bytes"]
    assert summary["opt_state_floats_per_param"] == 1.0


@pytest.fixture
def mixed_tree():
    """A pytree of numpy arrays, JAX arrays and abstract shapes of several dtypes."""
    return {
        "w": np.zeros((3, 4), dtype=np.float32),  # 12 floats, 48 bytes
        "count": jnp.zeros((), dtype=jnp.int32),  # 0 floats, 4 bytes
        "ids": np.zeros((5,), dtype=np.int32),  # 0 floats, 20 bytes
        "nested": [
            jax.ShapeDtypeStruct((2, 2), jnp.float32),  # 4 floats, 16 bytes
            np.zeros((3,), dtype=np.float16),  # 3 floats, 6 bytes
            None,
        ],
    }


def test_tree_bytes(mixed_tree):
    """tree_bytes sums size times item size over every leaf, integer leaves included."""
    assert memory.tree_bytes(mixed_tree) == 48 + 4 + 20 + 16 + 6


def test_tree_floats(mixed_tree):
    """tree_floats counts only floating-point scalars."""
    assert memory.tree_floats(mixed_tree) == 12 + 4 + 3


def test_state_summary_splits_by_tensor_kind():
    """state_summary counts state bytes and floats per parameter, split into matrices and
    vectors by initialising on each kind alone."""
    params = {
        "w": jax.ShapeDtypeStruct((3, 4), jnp.float32),
        "b": jax.ShapeDtypeStruct((4,), jnp.float32),
    }

    def init(tree):
        # Factored statistics for matrices (rows + cols floats), a full copy for vectors, and
        # an int32 counter.
        def stats(x):
            if x.ndim >= 2:
                return (jnp.zeros(x.shape[0]), jnp.zeros(x.shape[1]))
            return jnp.zeros(x.shape)

        return {"stats": jax.tree.map(stats, tree), "count": jnp.zeros((), jnp.int32)}

    summary = memory.state_summary(init, params)
    assert summary["opt_state_bytes"] == 4 * (3 + 4 + 4) + 4
    assert summary["opt_state_floats_per_param"] == pytest.approx((3 + 4 + 4) / 16)
    assert summary["opt_state_floats_per_param_matrix"] == pytest.approx((3 + 4) / 12)
    assert summary["opt_state_floats_per_param_vector"] == pytest.approx(1.0)


def test_state_summary_without_matrices():
    """A model with no matrix parameters reports None for the matrix share."""
    params = {"b": jax.ShapeDtypeStruct((5,), jnp.float32)}
    summary = memory.state_summary(lambda p: {"m": jax.tree.map(jnp.zeros_like, p)}, params)
    assert summary["opt_state_floats_per_param_matrix"] is None
    assert summary["opt_state_floats_per_param_vector"] == 1.0


def test_empty_tree():
    """An empty state holds nothing."""
    assert memory.tree_bytes(()) == 0
    assert memory.tree_floats({}) == 0
