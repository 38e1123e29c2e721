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
from optimizers.meta.estimators import EstimatorSettings, make_estimator, train_steps
from optimizers.meta.loop import OuterSettings, make_evaluation, meta_train
from optimizers.meta.problems import quadratic_problem, sample_specs
from tests.conftest import REPO_ROOT

PROBLEM = quadratic_problem(dim=8, batch_size=4, noise=0.0)


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
    _, _, losses = train_steps(PROBLEM, optimizer, params, optimizer.init(params),
                               jax.random.split(key, length))
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
                                     std=0.01, stagger=False)
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
    return est, make_evaluation(PROBLEM, momentum_sgd, steps=20, seeds=2)


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


def test_family_sampling_is_seeded_and_checked():
    kwargs = dict(image_sizes=[8, 16], hidden_sizes=[16, 32, 64], batch_sizes=[64, 128])
    assert sample_specs(3, 4, **kwargs) == sample_specs(3, 4, **kwargs)
    assert len(set(sample_specs(3, 4, **kwargs))) == 4
    assert len(sample_specs(0, 50, image_sizes=[8], hidden_sizes=[32], batch_sizes=[128])) == 1
    with pytest.raises(ValueError, match="hidden_sizes"):
        sample_specs(0, 1, image_sizes=[8], hidden_sizes=[], batch_sizes=[128])


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
    """conf/meta_train.yaml with each learned optimizer gives valid estimator, outer-loop and
    family settings and the optimizer's initial meta-parameters; a bad key is named."""
    import hydra

    from bench import meta_train as train
    from optimizers.learned.common import count_params
    from optimizers.meta.problems import ProblemSpec
    from tests.conftest import CONF_DIR

    with hydra.initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra.compose(config_name="meta_train", overrides=[f"optimizer={lopt}"])
        bad = hydra.compose(config_name="meta_train", overrides=["+meta.particle=3"])
    name, _, theta = train.lopt_from_config(cfg.optimizer)
    assert name == lopt and count_params(theta) > 0
    assert train._settings(cfg.meta, EstimatorSettings, "meta").kind == "pes"
    assert train._settings(cfg.outer, OuterSettings, "outer").steps >= 1
    train._settings(cfg.evaluation, ProblemSpec, "evaluation")
    with pytest.raises(ValueError, match="meta.particle: unknown setting"):
        train._settings(bad.meta, EstimatorSettings, "meta")


def test_checkpoint_catalogue_lists_every_shipped_checkpoint():
    from optimizers.learned.checkpoint import SHIPPED_DIR

    page = (SHIPPED_DIR / "README.md").read_text()
    shipped = sorted(SHIPPED_DIR.glob("*.npz"))
    assert shipped
    for path in shipped:
        assert f"`{path.stem}`" in page, f"{path.name} is missing from {SHIPPED_DIR}/README.md"
