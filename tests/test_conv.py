"""The convnet task's two formulations of a convolution compute the same function."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from tasks import conv

CASES = {  # (image size, in channels, channels, stride)
    "fmnist_conv_channels": (14, 1, [16, 32, 32], 2),  # fmnist_conv's layers, smaller images
    "odd_size": (9, 3, [4, 6], 2),
    "stride_1": (7, 2, [5], 1),
    "stride_3": (10, 1, [3, 4], 3),
}


@pytest.mark.parametrize("case", CASES)
def test_patches_match_xla_convolutions_forward_and_gradient(case):
    """Logits and every parameter's gradient agree to 1e-5 (relative to the largest value)."""
    size, c_in, channels, stride = CASES[case]
    params = conv.init_convnet(jax.random.key(0), c_in, channels, num_classes=10)
    images = jax.random.normal(jax.random.key(1), (4, size, size, c_in))

    def loss(p, formulation):
        logits = conv.apply_convnet(p, images, stride, formulation)
        return jnp.sum(jnp.sin(logits)), logits

    (_, xla), g_xla = jax.value_and_grad(loss, has_aux=True)(params, "xla")
    (_, patches), g_patches = jax.value_and_grad(loss, has_aux=True)(params, "patches")
    assert float(jnp.max(jnp.abs(patches - xla))) <= 1e-5 * float(jnp.max(jnp.abs(xla)))
    for a, b in zip(jax.tree.leaves(g_patches), jax.tree.leaves(g_xla), strict=True):
        assert float(jnp.max(jnp.abs(a - b))) <= 1e-5 * float(jnp.max(jnp.abs(b)))


def test_auto_takes_the_measured_formulation_and_bad_names_are_refused():
    expected = "patches" if jax.default_backend() in conv.PATCHES_BACKENDS else "xla"
    assert conv.resolve_formulation("auto") == expected
    with pytest.raises(ValueError, match="formulation='im2col'"):
        conv.convnet(formulation="im2col")
