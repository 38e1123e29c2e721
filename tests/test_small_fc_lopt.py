"""small_fc_lopt: the paper's learned optimizer, its design space, paths and checkpoints."""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from omegaconf import OmegaConf

from bench.measure.memory import state_summary
from optimizers.learned import checkpoint, learned_optimizer, make_config
from optimizers.learned import small_fc_features as F
from optimizers.learned import small_fc_lopt as S
from optimizers.learned import small_fc_normalisation as N
from optimizers.learned.common import count_params
from tests.conftest import CONF_DIR

# The standard task's MLP: 8x8 inputs, 32 hidden units, 10 classes.
MLP = {"l0": {"w": (64, 32), "b": (32,)}, "l1": {"w": (32, 10), "b": (10,)}}
# Design-space variants (each compiles both paths, so the list is kept short).
VARIANTS = {
    "default": {},
    "hidden1_layers1": {"hidden_size": 1, "hidden_layers": 1},
    "lean": {"adafactor_decays": (), "use_time": False, "use_param": False,
             "momentum_decays": (0.9,)},
}
SMALL = {"w": (12, 8), "square": (6, 6), "cube": (5, 4, 3), "b": (8,)}


def _params(key, shapes=MLP):
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, s) for k, s in zip(keys, leaves)])


def _tx(path="unrolled", seed=0, **settings):
    config = S.Config(path=path, **settings)
    return S.to_optax(S.init_meta(jax.random.key(seed), config), config)


def test_meta_parameter_count_at_defaults():
    """39 -> 4 -> 4 -> 2 network (190 weights) + 7 decay offsets = 197."""
    config = S.Config()
    assert S.num_features(config) == 28
    assert count_params(S.init_meta(jax.random.key(0), config)) == 197


def test_state_floats_per_parameter_on_the_standard_mlp():
    """4 floats per matrix entry plus factored rows/columns, 7 per vector entry."""
    shapes = jax.eval_shape(lambda: _params(jax.random.key(0)))
    summary = state_summary(_tx().init, shapes)
    assert 4.0 <= summary["opt_state_floats_per_param"] <= 4.6
    assert summary["opt_state_floats_per_param_vector"] == 7.0
    matrix_entries = 64 * 32 + 32 * 10
    factored = 3 * (64 + 32 + 32 + 10)  # three decays of a row and a column per matrix
    assert summary["opt_state_floats_per_param_matrix"] == pytest.approx(
        (4 * matrix_entries + factored) / matrix_entries)


def test_state_follows_the_features():
    """Without factored features no factored accumulators are kept, and so on."""
    params = _params(jax.random.key(0))
    full = _tx().init(params)
    lean = _tx(adafactor_decays=(), use_rms=False, use_rms_momenta=False).init(params)
    assert full.factored and full.rms
    assert lean.factored == () and lean.rms == ()
    assert len(lean.momenta) == len(jax.tree.leaves(params))


def test_unrolled_update_keeps_no_full_size_temporary():
    """XLA's memory analysis of the default update, applied with donated buffers as the
    harness times it, on a matrix large enough for the blocked sums: its temporaries stay well
    under one float per parameter (the squared gradient shared by the two factored means used
    to be written out in full: one float per parameter)."""
    params = {"w": jnp.zeros((4096, 1024), jnp.float32)}
    tx = _tx("unrolled")
    state = tx.init(params)

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params).compile()
    temp_floats = compiled.memory_analysis().temp_size_in_bytes / 4 / params["w"].size
    assert temp_floats < 0.25, temp_floats


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_paths_compute_the_same_update(variant):
    """Stacked and unrolled paths agree to 1e-5 (relative, float32) over several steps on
    random parameters and gradients, matrices of equal and unequal sizes and vectors."""
    shapes = SMALL
    params = _params(jax.random.key(1), shapes)
    txs = {p: _tx(p, **VARIANTS[variant]) for p in S.PATHS}
    states = {p: tx.init(params) for p, tx in txs.items()}
    updates = {p: jax.jit(tx.update) for p, tx in txs.items()}
    for step in range(3):
        grads = _params(jax.random.key(100 + step), shapes)
        out = {}
        for p in S.PATHS:
            out[p], states[p] = updates[p](grads, states[p], params)
        for a, b in zip(jax.tree.leaves(out["stacked"]), jax.tree.leaves(out["unrolled"])):
            scale = float(jnp.max(jnp.abs(b)))
            assert scale > 0
            assert float(jnp.max(jnp.abs(a - b))) <= 1e-5 * scale


def test_blocked_normalisation_matches_the_stacked_path(monkeypatch):
    """The unrolled path's normalisation sums, taken a block of rows at a time for large
    tensors, agree with the stacked path's; forced here on small tensors with uneven tails,
    a rank-3 tensor, a matrix whose largest axis is not the first, and a vector."""
    monkeypatch.setattr(N, "BLOCKED_NORM_MIN_SIZE", 1)
    monkeypatch.setattr(N, "BLOCK_ELEMENTS", 28)
    monkeypatch.setattr(N, "BLOCKED_NORM_BACKENDS", (jax.default_backend(),))
    params = _params(jax.random.key(3), SMALL)
    txs = {p: _tx(p) for p in S.PATHS}
    states = {p: tx.init(params) for p, tx in txs.items()}
    for step in range(2):
        grads = _params(jax.random.key(200 + step), SMALL)
        out = {}
        for p, tx in txs.items():
            out[p], states[p] = jax.jit(tx.update)(grads, states[p], params)
        for a, b in zip(jax.tree.leaves(out["stacked"]), jax.tree.leaves(out["unrolled"])):
            assert float(jnp.max(jnp.abs(a - b))) <= 1e-5 * float(jnp.max(jnp.abs(b)))
    lowered = jax.jit(txs["unrolled"].update).lower(grads, states["unrolled"], params)
    assert "while" in lowered.as_text()  # the blocked loop really ran
    monkeypatch.setattr(N, "BLOCKED_NORM_BACKENDS", ())  # a backend that sums whole tensors
    lowered = jax.jit(_tx("unrolled").update).lower(grads, states["unrolled"], params)
    assert "while" not in lowered.as_text()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_shared_optimizer_contract(variant):
    """Stable state shapes and dtypes, one trace for several steps, finite non-zero updates."""
    tx = _tx(**VARIANTS[variant])
    params = _params(jax.random.key(2), SMALL)
    state = tx.init(params)
    traces = []

    @jax.jit
    def step(params, state, grads):
        traces.append(1)
        updates, state = tx.update(grads, state, params, value=jnp.float32(1.0))
        return optax.apply_updates(params, updates), state, updates

    before = jax.tree.map(lambda x: (x.shape, x.dtype), state)
    for i in range(3):
        params, state, updates = step(params, state, _params(jax.random.key(10 + i), SMALL))
    assert len(traces) == 1
    assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == before
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
    assert any(float(jnp.max(jnp.abs(u))) > 0 for u in jax.tree.leaves(updates))
    assert int(state.count) == 3


def test_vmap_over_seeds():
    """Several seeds' parameters, gradients and states in one vmapped update."""
    tx = _tx()
    shapes = {"w": (6, 4), "b": (4,)}
    params = jax.vmap(lambda k: _params(k, shapes))(jax.random.split(jax.random.key(3), 3))
    grads = jax.vmap(lambda k: _params(k, shapes))(jax.random.split(jax.random.key(4), 3))
    states = jax.vmap(tx.init)(params)
    updates, states = jax.jit(jax.vmap(tx.update))(grads, states, params)
    assert jax.tree.leaves(updates)[0].shape[0] == 3
    assert states.count.shape == (3,)


def test_missing_params_is_a_clear_error():
    tx = _tx()
    params = _params(jax.random.key(0))
    with pytest.raises(ValueError, match="small_fc_lopt needs the parameters"):
        tx.update(params, tx.init(params))


def test_checkpoint_round_trips_bit_for_bit(tmp_path):
    config = S.Config(hidden_size=8)
    theta = S.init_meta(jax.random.key(5), config)
    theta = jax.tree.map(lambda x: x + 0.1234567, theta)
    path = checkpoint.save(tmp_path / "t.npz", S.NAME, config, theta)
    loaded = checkpoint.load(path, S.NAME, config, like=S.init_meta(jax.random.key(0), config))
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(loaded)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert a.dtype == b.dtype


def test_checkpoint_of_another_architecture_or_config_is_refused(tmp_path):
    config = S.Config()
    path = checkpoint.save(tmp_path / "t.npz", S.NAME, config,
                           S.init_meta(jax.random.key(0), config))
    like = S.init_meta(jax.random.key(0), config)
    with pytest.raises(checkpoint.CheckpointMismatchError, match="not 'mlp_lopt'"):
        checkpoint.load(path, "mlp_lopt", config, like=like)
    other = dataclasses.replace(config, hidden_size=8)
    with pytest.raises(checkpoint.CheckpointMismatchError, match="hidden_size"):
        checkpoint.load(path, S.NAME, other, like=S.init_meta(jax.random.key(0), other))
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "missing.npz", S.NAME, config, like=like)


def test_factory_builds_from_the_yaml_and_names_bad_settings(tmp_path):
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "optimizer" / "small_fc_lopt.yaml"))
    cfg.pop("_target_")
    tx = learned_optimizer(**cfg)
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    with pytest.raises(ValueError, match="optimizer.hidden_sise"):
        make_config("small_fc_lopt", hidden_sise=3)
    with pytest.raises(ValueError, match="optimizer.path='fused'"):
        make_config("small_fc_lopt", path="fused")
    # A checkpoint saved by the factory's own config loads back through the factory.
    config = make_config("small_fc_lopt", **{k: v for k, v in cfg.items()
                                             if k not in ("architecture", "checkpoint", "seed")})
    path = checkpoint.save(tmp_path / "c.npz", "small_fc_lopt", config,
                           S.init_meta(jax.random.key(1), config))
    assert isinstance(learned_optimizer(**{**cfg, "checkpoint": str(path)}),
                      optax.GradientTransformationExtraArgs)


def test_factored_dims_follow_the_reference_rule():
    """d0 is the largest axis, d1 the second; for equal sizes d0 is the later axis."""
    assert F.factored_dims((64, 32)) == (0, 1)
    assert F.factored_dims((32, 64)) == (1, 0)
    assert F.factored_dims((16, 16)) == (1, 0)
    assert F.factored_dims((6, 5, 4)) == (0, 1)
    assert F.factored_dims((7,)) is None


def test_auto_path_unrolls_only_small_networks():
    """The unrolled path is the default, except for networks too wide to compile unrolled."""
    assert S.resolve_path(S.Config()) == S.DEFAULT_PATH.get(jax.default_backend(), "unrolled")
    assert S.resolve_path(S.Config(hidden_size=32)) == "stacked"
    assert S.resolve_path(S.Config(hidden_size=32, path="unrolled")) == "unrolled"
    assert S.unrolled_terms(S.Config()) == 28 * 4 + 16


def _run(shapes, steps, seed=1, **settings):
    """Updates and final state of ``steps`` jitted updates on random parameters/gradients."""
    params = _params(jax.random.key(seed), shapes)
    tx = _tx(**settings)
    state, update, out = tx.init(params), jax.jit(tx.update), []
    for step in range(steps):
        grads = _params(jax.random.key(300 + step), shapes)
        updates, state = update(grads, state, params)
        out.append(updates)
        params = optax.apply_updates(params, updates)
    return out, state


def _close(a, b, tol=1e-5) -> bool:
    return all(float(jnp.max(jnp.abs(x - y))) <= tol * float(jnp.max(jnp.abs(x)))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_subsampled_normalisation_takes_a_fixed_strided_sample(monkeypatch):
    """At stride 1 the subsample is the whole tensor (the exact update); at stride 4 it is
    one run of 16 elements in 5 (4 shares a factor with the rows' length): exact again on a
    tensor whose runs are all alike, not on random values."""
    monkeypatch.setattr(N, "SUBSAMPLED_MIN_RUNS", 1)
    shapes = {"w": (16, 24), "b": (160,)}
    assert [N.sample_spacing(s, 4) for s in shapes.values()] == [5, 7]
    exact, _ = _run(shapes, 2)
    whole, _ = _run(shapes, 2, normalisation="subsampled", norm_stride=1)
    assert all(_close(a, b) for a, b in zip(exact, whole))
    strided, _ = _run(shapes, 2, normalisation="subsampled", norm_stride=4)
    for name in shapes:
        assert not _close(exact[-1][name], strided[-1][name], 1e-3)

    alike = {"w": (16, 16)}
    def repeated_rows(key, shapes=alike):
        return {"w": jnp.tile(jax.random.normal(key, (1, 16)), (16, 1))}
    monkeypatch.setattr(sys.modules[__name__], "_params", repeated_rows)
    exact, _ = _run(alike, 2)
    strided, _ = _run(alike, 2, normalisation="subsampled", norm_stride=4)
    assert all(_close(a, b) for a, b in zip(exact, strided))


def _inputs_with_row_scales(shape, key):
    """Features' inputs for a matrix whose rows differ in scale by up to 100x (a first
    layer's rows are its input features), accumulators shaped like running averages."""
    ks = jax.random.split(key, 5)
    scale = jnp.exp(jax.random.uniform(ks[0], (shape[0], 1), minval=-2.3, maxval=2.3))
    g = jax.random.normal(ks[1], shape) * scale
    momenta = jax.random.normal(ks[2], (3, *shape)) * scale
    rms = jnp.mean(jnp.square(jax.random.normal(ks[3], (2, 10, *shape))), 1) * scale ** 2
    d0, d1 = F.factored_dims(shape)
    factored = tuple(jnp.mean(jnp.square(g), axis=d)[None].repeat(3, 0) for d in (d0, d1))
    return F.tensor_inputs(g, 0.1 * jax.random.normal(ks[4], shape), momenta, rms, factored)


@pytest.mark.parametrize("shape", [(64, 256), (256, 64)])
def test_subsampled_scales_hold_where_rows_differ_in_scale(shape, monkeypatch):
    """One element in 17 (runs spread over every row and column) estimates every feature's
    scale within 15% on matrices whose rows differ in scale (a subsample of whole rows was
    off by up to 5x on such a layer), even at 60 runs, below the size where it is used."""
    monkeypatch.setattr(N, "SUBSAMPLED_MIN_RUNS", 1)
    config = S.Config(normalisation="subsampled")
    inputs = _inputs_with_row_scales(shape, jax.random.key(0))
    feats = F.features(inputs, config)
    exact = N.norm_scales(inputs, feats, config, shape)
    sampled = N.subsampled_scales(inputs, feats, config, shape)
    assert N.sample_count(shape, config.norm_stride) < np.prod(shape) / 16
    assert float(jnp.max(jnp.abs(sampled / exact - 1))) < 0.15


def test_subsampling_only_where_the_sample_is_large():
    """Below SUBSAMPLED_MIN_RUNS runs a tensor is normalised exactly (a small sample misjudges
    the scale and the cost saved is small); at a few thousand runs the sample is used, and
    holds every feature's scale within 5%."""
    config = S.Config(normalisation="subsampled")

    def runs(shape):
        return N.sample_count(shape, config.norm_stride) // N.SAMPLE_RUN

    small, large = (128, 128), (1024, 1024)
    assert runs(small) < N.SUBSAMPLED_MIN_RUNS <= runs(large)
    for shape, exact_expected in ((small, True), (large, False)):
        inputs = _inputs_with_row_scales(shape, jax.random.key(1))
        feats = F.features(inputs, config)
        exact = N.norm_scales(inputs, feats, config, shape)
        sampled = N.subsampled_scales(inputs, feats, config, shape)
        error = float(jnp.max(jnp.abs(sampled / exact - 1)))
        assert (error < 1e-6) == exact_expected, (shape, error)
        assert error < 0.05, (shape, error)


def test_lagged_normalisation_keeps_a_few_floats_per_tensor():
    """Lagged normalisation: the first update is the exact one, later ones use the previous
    step's scales (so they differ), and the state gains one float per full-size feature and
    tensor, none per element."""
    shapes = {"w": (12, 8), "cube": (5, 4, 3), "b": (8,)}
    exact, exact_state = _run(shapes, 3)
    lagged, state = _run(shapes, 3, normalisation="lagged")
    assert _close(exact[0], lagged[0])
    assert not _close(exact[1], lagged[1], 1e-3)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(lagged))
    per_element = [x.shape for x in jax.tree.leaves(state._replace(norm_means=()))]
    assert per_element == [x.shape for x in jax.tree.leaves(exact_state)]
    config = S.Config()
    sizes = [m.shape for m in state.norm_means]
    # a vector keeps all 28 full-size; in a factored tensor the row and column statistics
    # (4 of the 5 factored features per decay) are reduced: 28 - 4 * 3 = 16
    assert sizes == [(S.num_features(config),), (16,), (16,)]  # b, cube, w
    assert all(float(jnp.min(m)) > 0 for m in state.norm_means)


def test_normalisation_settings_are_checked():
    with pytest.raises(ValueError, match="optimizer.normalisation='fast'"):
        S.Config(normalisation="fast")
    with pytest.raises(ValueError, match="unrolled path only"):
        S.Config(normalisation="lagged", path="stacked")


def test_a_checkpoint_from_before_a_setting_reads_it_as_its_default(monkeypatch):
    """A setting missing from a checkpoint's header (saved before the setting existed) reads
    as its default: the checkpoint loads under the default and is refused under another
    value. The normalisation options share the meta-parameters, so a checkpoint loads under
    any of them (the shipped ones predate them)."""
    path = checkpoint.resolve("small_fc_lopt")
    assert "normalisation" not in checkpoint.read_header(path)["config"]
    config = S.Config()
    like = S.init_meta(jax.random.key(0), config)
    checkpoint.load(path, S.NAME, config, like=like)
    checkpoint.load(path, S.NAME, S.Config(normalisation="lagged", norm_stride=4), like=like)

    header = checkpoint.read_header(path)
    del header["config"]["exp_mult"]  # as if saved before exp_mult existed
    monkeypatch.setattr(checkpoint, "read_header", lambda _: header)
    checkpoint.load(path, S.NAME, config, like=like)
    with pytest.raises(checkpoint.CheckpointMismatchError, match="exp_mult"):
        checkpoint.load(path, S.NAME, dataclasses.replace(config, exp_mult=0.01), like=like)
