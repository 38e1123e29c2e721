"""mlp_lopt, nn_adam and rnn_mlp_lopt: sizes, state, jit/vmap behaviour, configs, checkpoints."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from omegaconf import OmegaConf

from bench.measure.memory import state_summary
from optimizers.learned import checkpoint, common, get_architecture, learned_optimizer, make_config

CONF = Path(__file__).resolve().parent.parent / "conf" / "optimizer"
# Meta-parameters at defaults (the reference code base's counts) and state floats per parameter
# on {"w": 256x128, "b": 128}, as documented in each module.
EXPECTED = {
    "mlp_lopt": (1_762, 6.0),
    "nn_adam": (6_856, 2.004),
    "rnn_mlp_lopt": (35_799, 10.01),
}
NAMES = sorted(EXPECTED)
NEEDS_LOSS = ("nn_adam", "rnn_mlp_lopt")


def _params(key: jax.Array) -> dict[str, jax.Array]:
    """A small pytree with a matrix, a vector and a scalar."""
    k1, k2, k3 = jax.random.split(key, 3)
    return {"w": jax.random.normal(k1, (8, 5)), "b": 0.1 * jax.random.normal(k2, (5,)),
            "s": jax.random.normal(k3, ())}


def _grads(params, step: int):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(100 + step), len(leaves))
    return treedef.unflatten([jax.random.normal(k, jnp.shape(x)) for k, x in zip(keys, leaves)])


def _signature(tree):
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, [(jnp.shape(x), jnp.result_type(x)) for x in leaves]


@functools.cache
def _tx(name: str, seed: int = 0) -> optax.GradientTransformationExtraArgs:
    module = get_architecture(name)
    return module.to_optax(module.init_meta(jax.random.key(seed)))


@functools.cache
def _step(name: str):
    """The jitted training step, the same step unjitted (to vmap) and the list of traces of
    the jitted one (shared by the tests, which all call it on the same shapes)."""
    tx = _tx(name)
    traces = []

    def step(params, grads, state, loss):
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), updates, state

    def counted(*args):
        traces.append(1)  # runs once per trace, never per call
        return step(*args)

    return jax.jit(counted), step, traces


@functools.cache
def _three_steps(name: str):
    """Three jitted updates on random gradients: updates, states and the traces so far."""
    tx = _tx(name)
    step, _, traces = _step(name)
    params = _params(jax.random.key(0))
    states = [tx.init(params)]
    updates = []
    for i in range(3):
        params, u, state = step(params, _grads(params, i), states[-1], jnp.float32(2.0 - 0.1 * i))
        updates.append(u)
        states.append(state)
    return updates, states, len(traces)


@pytest.mark.parametrize("name", NAMES)
def test_meta_parameter_count(name):
    module = get_architecture(name)
    theta = module.init_meta(jax.random.key(0), module.Config())
    assert common.count_params(theta) == EXPECTED[name][0]
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(theta))


@pytest.mark.parametrize("name", NAMES)
def test_state_floats_per_param(name):
    params = {"w": jnp.zeros((256, 128)), "b": jnp.zeros((128,))}
    summary = state_summary(_tx(name).init, jax.eval_shape(lambda: params))
    assert summary["opt_state_floats_per_param"] == pytest.approx(EXPECTED[name][1], abs=0.02)
    if name == "mlp_lopt":  # the six momenta and nothing else that is a float
        assert summary["opt_state_floats_per_param"] == 6.0


@pytest.mark.parametrize("name", NAMES)
def test_updates_finite_and_nonzero(name):
    updates, _, _ = _three_steps(name)
    for u in updates:
        leaves = jax.tree.leaves(u)
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
        assert any(bool(jnp.any(x != 0)) for x in leaves)


@pytest.mark.parametrize("name", NAMES)
def test_state_keeps_structure(name):
    _, states, _ = _three_steps(name)
    first = _signature(states[0])
    assert all(_signature(s) == first for s in states[1:])
    assert states[-1].count.dtype == jnp.int32 and int(states[-1].count) == 3


@pytest.mark.parametrize("name", NAMES)
def test_traces_once(name):
    assert _three_steps(name)[2] == 1


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_seeds(name):
    """Two seeds at once under vmap give what each gives alone."""
    tx = _tx(name)
    step, plain_step, _ = _step(name)
    params = jax.vmap(_params)(jax.random.split(jax.random.key(3), 2))
    grads = jax.tree.map(lambda x: jax.random.normal(jax.random.key(4), x.shape), params)
    losses = jnp.asarray([1.0, 3.0], jnp.float32)
    state = jax.vmap(tx.init)(params)
    vstep = jax.jit(jax.vmap(plain_step))
    _, updates, state = vstep(params, grads, state, losses)
    _, updates, state = vstep(params, grads, state, losses)
    for i in range(2):
        one = lambda tree, i=i: jax.tree.map(lambda x: x[i], tree)  # noqa: E731
        s = tx.init(one(params))
        for _ in range(2):
            _, u, s = step(one(params), one(grads), s, losses[i])
        for a, b in zip(jax.tree.leaves(one(updates)), jax.tree.leaves(u)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("name", NEEDS_LOSS)
def test_missing_loss_names_optimizer(name):
    tx = _tx(name)
    params = _params(jax.random.key(0))
    with pytest.raises(ValueError, match=name):
        tx.update(params, tx.init(params), params)


@pytest.mark.parametrize("name", NAMES)
def test_params_required(name):
    tx = _tx(name)
    params = _params(jax.random.key(0))
    with pytest.raises(ValueError, match="params"):
        tx.update(params, tx.init(params), None, value=jnp.float32(1.0))


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip(name, tmp_path):
    module = get_architecture(name)
    config = module.Config()
    theta = module.init_meta(jax.random.key(7), config)
    path = checkpoint.save(tmp_path / f"{name}.npz", name, config, theta)
    loaded = checkpoint.load(path, name, config, like=module.init_meta(jax.random.key(8), config))
    assert jax.tree.structure(loaded) == jax.tree.structure(theta)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(theta)):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


@pytest.mark.parametrize("name", NAMES)
def test_builds_from_yaml(name):
    """The YAML holds every Config field at its default; the factory builds from it."""
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    kwargs = {k: cfg[k] for k in cfg if k != "_target_"}  # lists stay omegaconf ListConfigs
    assert kwargs.pop("architecture") == name
    settings = {k: v for k, v in kwargs.items() if k not in ("checkpoint", "seed")}
    assert make_config(name, **settings) == get_architecture(name).Config()
    tx = learned_optimizer(architecture=name, **kwargs)
    params = _params(jax.random.key(0))
    updates, _ = jax.jit(functools.partial(tx.update, value=jnp.float32(1.0)))(
        params, tx.init(params), params)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))


def test_mlp_lopt_matches_plain_formulation():
    """The folded first layer equals normalise-then-concatenate-time-features, then the MLP."""
    module = get_architecture("mlp_lopt")
    config = module.Config()
    theta = module.init_meta(jax.random.key(1), config)
    tx = module.to_optax(theta, config)
    params = _params(jax.random.key(2))
    state = tx.init(params)
    update = jax.jit(tx.update)
    decays = jnp.asarray(config.momentum_decays)
    momenta = jax.tree.map(lambda p: jnp.zeros(p.shape + (6,)), params)  # trailing here
    for i in range(3):
        grads = _grads(params, i)
        updates, state = update(grads, state, params)
        for key in params:
            g, p = grads[key], params[key]
            m = decays * momenta[key] + (1 - decays) * g[..., None]
            momenta[key] = m
            x = jnp.concatenate([g[..., None], p[..., None], m], -1)
            axes = tuple(range(p.ndim))
            x = x / jnp.sqrt(common.NORM_EPS + jnp.mean(x**2, axis=axes, keepdims=True))
            t = jnp.broadcast_to(common.time_features(i), p.shape + (11,))
            h = jnp.concatenate([x, t], -1)
            for j, layer in enumerate(theta):
                h = h @ layer["w"] + layer["b"]
                h = jax.nn.relu(h) if j < len(theta) - 1 else h
            step = h[..., 0] * jnp.exp(0.001 * h[..., 1]) * 0.001
            np.testing.assert_allclose(updates[key], -step, rtol=1e-4, atol=1e-9)
            np.testing.assert_allclose(jnp.moveaxis(state.momenta[key], 0, -1), m, rtol=1e-6,
                                       atol=1e-7)
        params = optax.apply_updates(params, updates)


def test_nn_adam_starts_as_fixed_adam():
    """With its zero head, a fresh nn_adam is Adam without bias correction at lr 1e-4."""
    tx = _tx("nn_adam")
    params = _params(jax.random.key(2))
    state = tx.init(params)
    update = jax.jit(functools.partial(tx.update, value=jnp.float32(1.0)))
    m = jax.tree.map(jnp.zeros_like, params)
    v = jax.tree.map(jnp.zeros_like, params)
    for i in range(3):
        grads = _grads(params, i)
        updates, state = update(grads, state, params)
        m = jax.tree.map(lambda a, g: 0.9 * a + 0.1 * g, m, grads)
        v = jax.tree.map(lambda a, g: 0.999 * a + 0.001 * g * g, v, grads)
        expected = jax.tree.map(
            lambda a, b: -1e-4 * (1 + 1e-8) / (1e-8 + jnp.sqrt(b + 1e-10)) * a, m, v)
        for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(expected)):
            np.testing.assert_allclose(a, b, rtol=1e-4)


# Shapes for the path tests: a matrix, a rank-3 tensor, a matrix whose largest axis is not the
# first, a vector and a scalar; with blocks of 7 elements every tensor but the scalar has a tail.
PATH_SHAPES = {"w": (12, 8), "cube": (5, 4, 3), "wide": (3, 20), "b": (13,), "s": ()}


@pytest.mark.parametrize("name", ["mlp_lopt", "rnn_mlp_lopt", "nn_adam"])
def test_blocked_path_matches_the_stacked_path(name, monkeypatch):
    """Blocks of rows and the reference path (the whole feature stack; nn_adam's whole-tensor
    reductions) give the same updates and state to 1e-5 (relative, float32) over three steps
    on random parameters and gradients, with meta-parameters far from their initialisation
    (so every output matters)."""
    module = get_architecture(name)
    monkeypatch.setattr(module, "BLOCK_ROWS", 7)
    theta = jax.tree.map(lambda w: w * 3.0 + 0.01, module.init_meta(jax.random.key(4)))
    txs = {path: module.to_optax(theta, module.Config(path=path)) for path in module.PATHS}
    shapes = list(PATH_SHAPES.values())
    keys = jax.random.split(jax.random.key(5), len(shapes))
    params = {name: jax.random.normal(k, s) for (name, s), k in zip(PATH_SHAPES.items(), keys)}
    states = {path: tx.init(params) for path, tx in txs.items()}
    updates = {path: jax.jit(tx.update) for path, tx in txs.items()}
    for step in range(3):
        grads = _grads(params, step)
        out = {}
        for path in module.PATHS:
            out[path], states[path] = updates[path](grads, states[path], params,
                                                    value=jnp.float32(2.0 - 0.5 * step))
        reference, fast = module.PATHS
        pairs = zip(jax.tree.leaves((out[reference], states[reference])),
                    jax.tree.leaves((out[fast], states[fast])), strict=True)
        for a, b in pairs:
            scale = float(jnp.max(jnp.abs(a)))
            assert float(jnp.max(jnp.abs(a - b))) <= 1e-5 * scale
        for a in jax.tree.leaves(out[reference]):
            assert float(jnp.max(jnp.abs(a))) > 0
        params = optax.apply_updates(params, out[reference])


@pytest.mark.parametrize("name", ["mlp_lopt", "rnn_mlp_lopt", "nn_adam"])
def test_auto_path_is_the_measured_one(name):
    """``auto`` resolves to the backend's measured path (else the reference, the first of
    PATHS), and an unknown path is refused."""
    module = get_architecture(name)
    expected = module.DEFAULT_PATH.get(jax.default_backend(), module.PATHS[0])
    assert module.resolve_path(module.Config()) == expected
    with pytest.raises(ValueError, match="optimizer.path='fast'"):
        module.Config(path="fast")


@pytest.mark.parametrize("path", ["direct", "blocked"])
def test_nn_adam_donated_update_does_not_copy_the_parameters(path, monkeypatch):
    """With the parameters and state donated, nn_adam's update and apply compile without a
    full-size copy: the parameter's statistics are ordered before the in-place write."""
    module = get_architecture("nn_adam")
    monkeypatch.setattr(module, "BLOCK_ROWS", 64)
    tx = module.to_optax(module.init_meta(jax.random.key(0)), module.Config(path=path))
    params = {"w": jnp.ones((48, 40))}
    state = tx.init(params)

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params, value=jnp.float32(1.0))
        return optax.apply_updates(params, updates), state

    hlo = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params).compile().as_text()
    copies = [line for line in hlo.splitlines() if " copy(" in line and "f32[48,40]" in line]
    assert not copies, copies
