"""Meta-training: the estimators against exact gradients, the outer loop's progress and its
exact resumption after a kill."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

from bench.records.files import read_parquet
from optimizers.meta.estimators import EstimatorSettings, make_estimator
from optimizers.meta.inner import device_sampler, train_steps
from optimizers.meta.loop import OuterSettings, evaluate_tasks, meta_train
from tasks.synthetic import noisy_quadratic
from tests.conftest import REPO_ROOT

PROBLEM = noisy_quadratic(dim=8, batch_size=4, noise=0.0)


def momentum_sgd(theta):
    """A two-parameter 'learned' optimizer: log learning rate and momentum logit."""
    return optax.with_extra_args_support(optax.sgd(
        jnp.exp(theta["log_lr"]), momentum=jax.nn.sigmoid(theta["momentum_logit"])))


THETA = {"log_lr": jnp.asarray(np.log(0.05), jnp.float32),
         "momentum_logit": jnp.asarray(0.0, jnp.float32)}


def episode_loss(theta, key, length):
    """The mean inner loss over one whole episode from the initialisation drawn with ``key``."""
    optimizer = momentum_sgd(theta)
    params = PROBLEM.init(key)
    _, _, losses = train_steps(PROBLEM, device_sampler(PROBLEM), optimizer, params,
                               optimizer.init(params), jax.random.split(key, length))
    return jnp.mean(losses)


def cosine(a, b):
    a, b = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)]) for t in (a, b))
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), float(np.linalg.norm(a)
                                                                        / np.linalg.norm(b))


def test_pes_over_an_episode_matches_the_gradient_that_truncated_es_misses():
    """Over an episode of three truncations, PES's estimates sum to the gradient of the whole
    episode's meta-loss (it accounts for how earlier steps shape later losses); truncated ES,
    which forgets earlier perturbations, does not."""
    def summed(kind):
        settings = EstimatorSettings(kind=kind, particles=2000, truncation=10, inner_length=30,
                                     std=0.01, stagger=False, normalisation="none")
        est = make_estimator(PROBLEM, momentum_sgd, settings)
        particles = est.init(THETA, jax.random.key(0))
        total = jax.tree.map(jnp.zeros_like, THETA)
        for i in range(3):
            gradient, particles, _ = est.estimate(THETA, particles, jax.random.key(10 + i))
            total = jax.tree.map(lambda a, b: a + b / 3, total, gradient)
        return total

    keys = jax.random.split(jax.random.key(0), 2000)
    exact = jax.grad(lambda t: jnp.mean(jax.vmap(lambda k: episode_loss(t, k, 30))(keys)))(THETA)
    pes_similarity, pes_ratio = cosine(summed("pes"), exact)
    tes_similarity, tes_ratio = cosine(summed("tes"), exact)
    assert pes_similarity > 0.95 and 0.8 < pes_ratio < 1.25
    assert abs(tes_ratio - 1) > 2 * abs(pes_ratio - 1) or tes_similarity < pes_similarity


@functools.cache
def small_setup():
    """One compiled estimator and evaluation shared by the outer-loop tests."""
    est = make_estimator(PROBLEM, momentum_sgd, EstimatorSettings(
        particles=4, truncation=5, inner_length=15))
    return est, evaluate_tasks([PROBLEM], momentum_sgd, steps=20, seeds=2)


def small_run(folder, theta=THETA, steps=24, learning_rate=0.05, slow=0.0):
    """A small meta-training that checkpoints every 2 outer steps; ``slow`` seconds per
    evaluation leave time to kill it mid-way."""
    est, evaluate_fast = small_setup()

    def evaluate(theta):
        time.sleep(slow)
        return evaluate_fast(theta)

    settings = OuterSettings(steps=steps, learning_rate=learning_rate, warmup_steps=2,
                             eval_every=1, eval_steps=20, eval_seeds=2, checkpoint_every=2)
    return meta_train(theta, [est], evaluate, settings, folder, stream=open(os.devnull, "w"))


def test_a_few_outer_steps_lower_the_meta_loss(tmp_path):
    theta = {"log_lr": jnp.asarray(np.log(1e-3), jnp.float32),
             "momentum_logit": jnp.asarray(0.0, jnp.float32)}
    state, curve = small_run(tmp_path, theta, steps=30, learning_rate=0.1)
    assert curve["eval_loss"].iloc[-1] < 0.75 * curve["eval_loss"].iloc[0]
    assert curve["meta_loss"].iloc[-5:].mean() < curve["meta_loss"].iloc[1:6].mean()
    assert float(state.theta["log_lr"]) > np.log(1e-3)
    assert list(curve["outer_step"]) == list(range(31))


KILLABLE = """
import sys
from pathlib import Path
from tests.test_meta import small_run
small_run(Path(sys.argv[1]), slow=float(sys.argv[2]))
"""


def test_a_killed_meta_training_resumes_to_the_same_curve(tmp_path):
    _, expected = small_run(tmp_path / "whole")
    folder = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen([sys.executable, "-c", KILLABLE, str(folder), "0.1"],
                               cwd=REPO_ROOT, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        curve = folder / "curve.parquet"
        if curve.exists() and read_parquet(curve)["outer_step"].max() >= 8:
            break
        time.sleep(0.05)
    time.sleep(0.13)  # land somewhere between checkpoints
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert read_parquet(folder / "curve.parquet")["outer_step"].max() < 24
    _, resumed = small_run(folder)
    on_disk = read_parquet(folder / "curve.parquet")
    columns = ["outer_step", "meta_loss", "eval_loss", "gradient_norm", "learning_rate"]
    for curve in (resumed, on_disk):
        pd.testing.assert_frame_equal(curve[columns].reset_index(drop=True),
                                      expected[columns].reset_index(drop=True))


def scaled(task, factor, name):
    """``task`` with its loss multiplied by ``factor``: the same problem on another scale."""
    import dataclasses

    return dataclasses.replace(task, name=name, loss=lambda p, b: factor * task.loss(p, b))


def test_log_normalisation_makes_a_task_s_loss_scale_irrelevant():
    """Per-task normalisation: with the log meta-loss, a task whose loss is 100x larger gives
    the same meta-gradient (the inner optimizer is Adam, which takes the same steps on both);
    without it, the meta-loss terms are the clipped losses, 100x larger."""
    from optimizers.meta.inner import meta_loss_terms

    def adam(theta):
        return optax.with_extra_args_support(optax.adam(
            jnp.exp(theta["log_lr"]), b1=jax.nn.sigmoid(theta["momentum_logit"]), eps=1e-12))

    def gradient(task):
        est = make_estimator(task, adam, EstimatorSettings(particles=8, truncation=5,
                                                           inner_length=10))
        return est.estimate(THETA, est.init(THETA, jax.random.key(0)), jax.random.key(1))[0]

    small_g, big_g = gradient(PROBLEM), gradient(scaled(PROBLEM, 100.0, "quadratic_x100"))
    for a, b in zip(jax.tree.leaves(big_g), jax.tree.leaves(small_g)):
        np.testing.assert_allclose(a, b, rtol=2e-3)
    losses = jnp.asarray([0.5, 2.0, jnp.nan, 50.0])
    np.testing.assert_allclose(meta_loss_terms(losses, 10.0, "none"), [0.5, 2.0, 10.0, 10.0])
    np.testing.assert_allclose(meta_loss_terms(100 * losses, 1000.0, "log"),
                               np.log(100) + np.log([0.5, 2.0, 10.0, 10.0]), rtol=1e-6)


def test_meta_training_over_two_tasks_lowers_the_held_out_loss(tmp_path):
    """Meta-training draws from two tasks of different shapes (one estimator each, one drawn
    per outer step by weight, estimates scaled to unit norm: the quadratic's shared with the
    other tests) and lowers the loss of a third task it never trained on."""
    from tasks.synthetic import synthetic_mlp

    quadratic, _ = small_setup()
    teacher = make_estimator(synthetic_mlp(name="teacher8", inputs=8, hidden_sizes=[8],
                                           batch_size=16), momentum_sgd,
                             EstimatorSettings(particles=4, truncation=5, inner_length=15))
    held_out = synthetic_mlp(name="teacher12", inputs=12, hidden_sizes=[4], batch_size=16)
    theta = {"log_lr": jnp.asarray(np.log(1e-2), jnp.float32),
             "momentum_logit": jnp.asarray(0.0, jnp.float32)}
    evaluate = evaluate_tasks([held_out], momentum_sgd, steps=30, seeds=2)
    outer = OuterSettings(steps=20, learning_rate=0.3, warmup_steps=2, tasks_per_step=1,
                          balance="unit", eval_every=10, eval_steps=30, eval_seeds=2,
                          checkpoint_every=10)
    state, curve = meta_train(theta, [quadratic, teacher], evaluate, outer, tmp_path,
                              stream=open(os.devnull, "w"), weights=[1.0, 3.0])
    evaluations = read_parquet(tmp_path / "evaluations.parquet")
    assert set(evaluations["task"]) == {"teacher12"}
    assert list(evaluations["outer_step"]) == [0, 10, 20]
    assert evaluations["eval_loss"].iloc[-1] < 0.75 * evaluations["eval_loss"].iloc[0]
    assert float(state.theta["log_lr"]) > np.log(1e-2)


def test_a_fresh_machine_resumes_from_the_portable_state(tmp_path):
    """With a mirror folder, a run whose full state is gone (another machine) resumes from the
    mirror's small state at the step it reached; a mirror from other tasks is refused."""
    est, evaluate = small_setup()
    settings = OuterSettings(steps=8, learning_rate=0.05, warmup_steps=2, eval_every=4,
                             eval_steps=20, eval_seeds=2, checkpoint_every=2)
    quiet = open(os.devnull, "w")
    mirror = tmp_path / "kept"
    meta_train(THETA, [est], evaluate, settings, tmp_path / "a", quiet, stop_after=4,
               mirror=mirror)
    assert sorted(p.name for p in mirror.iterdir()) == ["curve.parquet", "evaluations.parquet",
                                                        "resume.npz"]
    state, curve = meta_train(THETA, [est], evaluate, settings, tmp_path / "b", quiet,
                              mirror=mirror)
    assert list(curve["outer_step"]) == list(range(9))
    assert int(state.particles[0].episode[0]) >= 1
    other = make_estimator(scaled(PROBLEM, 2.0, "other"), momentum_sgd, EstimatorSettings(
        particles=4, truncation=5, inner_length=15))
    with pytest.raises(ValueError, match="over tasks \\['quadratic'\\]"):
        meta_train(THETA, [other], evaluate, settings, tmp_path / "c", quiet, mirror=mirror)


def test_families_are_seeded_distinct_and_checked():
    from tasks.family import draw_family, identity

    entries = [{"sampler": "image_mlp", "count": 4, "weight": 2.0, "image_size": [4, 8],
                "hidden_size": [8, 16], "hidden_layers": [0, 1], "batch_size": [16, 32]},
               {"sampler": "convnet", "count": 1}, {"sampler": "mlp_autoencoder", "count": 1}]
    members = draw_family(entries, seed=3)
    assert members == draw_family(entries, seed=3)
    assert len({identity(m.config) for m in members}) == 6
    assert [m.weight for m in members] == [0.5] * 4 + [1.0, 1.0]
    assert members[0].name.startswith("fmnist") and "_mlp" in members[0].name
    validation = draw_family(entries[:1], seed=3, exclude=members)
    assert not {identity(m.config) for m in validation} & {identity(m.config) for m in members}
    with pytest.raises(ValueError, match="fewer than 9 distinct"):
        draw_family([{"sampler": "image_mlp", "count": 9, "image_size": [4, 4],
                      "hidden_size": [8, 8], "hidden_layers": [0, 1], "batch_size": [16, 17]}], 0)
    for bad, match in (({"sampler": "resnet"}, "sampler='resnet'"),
                       ({"sampler": "convnet", "weight": 0}, "weight=0.0"),
                       ({"sampler": "convnet", "channels": [8, 4]}, r"channels=\[8, 4\]")):
        with pytest.raises(ValueError, match=match):
            draw_family([bad], 0)


@pytest.mark.parametrize("bad, match", [
    ({"kind": "sgd"}, "meta.estimator='sgd'"),
    ({"truncation": 0}, "meta.truncation=0"),
    ({"inner_length": 5, "truncation": 10}, "meta.inner_length=5"),
    ({"std": 0.0}, "meta.std=0.0"),
])
def test_bad_estimator_settings_are_named(bad, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(")):
        EstimatorSettings(**bad)


def _checkpointed_arms():
    """(preset, optimizer name, settings) of every arm of a sweep preset that names a
    checkpoint."""
    from omegaconf import OmegaConf

    from tests.conftest import CONF_DIR

    for path in sorted((CONF_DIR / "sweep").glob("*.yaml")):
        optimizers = OmegaConf.to_container(OmegaConf.load(path)).get("sweep", {}).get(
            "optimizers", {})
        for name, entries in (optimizers.items() if isinstance(optimizers, dict) else ()):
            for settings in entries if isinstance(entries, list) else [entries]:
                if isinstance(settings, dict) and settings.get("checkpoint"):
                    yield pytest.param(name, settings, id=f"{path.stem}-{settings['checkpoint']}")


@pytest.mark.parametrize("name, settings", list(_checkpointed_arms()))
def test_presets_name_shipped_checkpoints_that_fit_their_settings(name, settings):
    """Every checkpoint a preset names is shipped and loads into the settings the preset gives
    it (a missing file or a mismatched variant fails here, not mid-sweep)."""
    from omegaconf import OmegaConf

    from optimizers.learned import learned_optimizer
    from tests.conftest import CONF_DIR

    config = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "optimizer" / f"{name}.yaml"))
    config.pop("_target_")
    learned_optimizer(**{**config, **settings})


@pytest.mark.parametrize("lopt", ["small_fc_lopt", "mlp_lopt"])
def test_meta_train_config_composes_into_settings(lopt):
    """conf/meta_train.yaml with each learned optimizer gives valid estimator and outer-loop
    settings, the family's tasks and the optimizer's initial meta-parameters; a bad key is
    named."""
    import hydra

    from bench import meta_train as train
    from optimizers.learned.common import count_params
    from tests.conftest import CONF_DIR

    with hydra.initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra.compose(config_name="meta_train", overrides=[f"optimizer={lopt}"])
        bad = hydra.compose(config_name="meta_train", overrides=["+meta.particle=3"])
    name, _, theta = train.lopt_from_config(cfg.optimizer)
    assert name == lopt and count_params(theta) > 0
    assert train._settings(cfg.meta, EstimatorSettings, "meta").kind == "pes"
    assert train._settings(cfg.outer, OuterSettings, "outer").steps >= 1
    members, validation = train.family_members(cfg.family)
    assert [m.config["name"] for m in members + validation] == ["fmnist_mlp8", "fmnist_mlp8"]
    with pytest.raises(ValueError, match="meta.particle: unknown setting"):
        train._settings(bad.meta, EstimatorSettings, "meta")


@pytest.mark.parametrize("family", sorted(p.stem for p in (REPO_ROOT / "conf" / "family")
                                          .glob("*.yaml")))
def test_family_configs_draw_tasks_that_build(family):
    """Every conf/family entry draws its members; each builds into a Task whose batches can be
    drawn on the device (what meta-training needs)."""
    from omegaconf import OmegaConf

    from bench import meta_train as train

    cfg = OmegaConf.load(REPO_ROOT / "conf" / "family" / f"{family}.yaml")
    members, validation = train.family_members(cfg)
    assert members and validation and cfg.name == family
    for member in members + validation:
        task = train.build(member)
        assert task.name == member.name and task.train_arrays is not None


def test_checkpoint_catalogue_lists_every_shipped_checkpoint():
    from optimizers.learned.checkpoint import SHIPPED_DIR

    page = (SHIPPED_DIR / "README.md").read_text()
    shipped = sorted(SHIPPED_DIR.glob("*.npz"))
    assert shipped
    for path in shipped:
        assert f"`{path.stem}`" in page, f"{path.name} is missing from {SHIPPED_DIR}/README.md"
