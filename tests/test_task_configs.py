"""Every task config in conf/task/ builds a Task that honours the Task contract.

Configs that need MNIST or CIFAR-10 run on generated stand-ins (tests/standins.py) unless
$MNIST_DIR / $CIFAR10_DIR point at the real files.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import os
from pathlib import Path

import hydra.utils
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from omegaconf import OmegaConf

import tasks
from tasks.data import cifar10, fashion_mnist, images, mnist
from tests.standins import write_cifar10_standin, write_mnist_standin

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "conf" / "task").glob("*.yaml"))
# Settings changed for the tests only: the GPU-sized LM keeps its width but gets two of its
# layers (every layer is the same code) and a batch and context small enough for a CPU.
TEST_OVERRIDES = {"lm_gpu": {"batch_size": 1, "seq_len": 16, "eval_windows": 4,
                             "num_layers": 2}}


@pytest.fixture(scope="module", autouse=True)
def standin_data(tmp_path_factory):
    """Stand-in MNIST and CIFAR-10 folders where the real ones are not configured."""
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("standins")
        if not os.environ.get(mnist.ENV_VAR):
            patch.setenv(mnist.ENV_VAR, str(write_mnist_standin(root / "mnist")))
        if not os.environ.get(cifar10.ENV_VAR):
            patch.setenv(cifar10.ENV_VAR, str(write_cifar10_standin(root / "cifar10")))
        _task.cache_clear()
        yield
        for cached in (_task, _params, _adam_step):
            cached.cache_clear()
        images._load.cache_clear()


def _config(path: Path):
    cfg = OmegaConf.load(path)
    for key, value in TEST_OVERRIDES.get(path.stem, {}).items():
        cfg[key] = value
    return cfg


@functools.cache
def _task(path: Path) -> tasks.Task:
    return hydra.utils.instantiate(_config(path), _convert_="all")


def _take(iterator, count):
    return list(itertools.islice(iterator, count))


def _assert_batches_equal(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_task_configs_found():
    """The glob finds the task configs, among them the synthetic test task."""
    assert any(path.stem == "synthetic" for path in CONFIGS)


@functools.cache
def _params(path: Path):
    return _task(path).init(jax.random.key(0))


@functools.cache
def _adam_step(path: Path):
    """One jitted Adam step of the task (compiled once per config and batch shape): new
    parameters and state, the loss and gradients before the update, and the task's metrics."""
    task = _task(path)
    tx = optax.adam(1e-3)

    @jax.jit
    def step(params, state, batch):
        loss, grads = jax.value_and_grad(task.loss)(params, batch)
        metrics = task.metrics(params, batch) if task.metrics is not None else {}
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss, grads, metrics

    return tx, step


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_loss_on_real_batch_is_finite(path):
    """Instantiation gives a Task; its loss on a real training batch is a finite scalar."""
    task = _task(path)
    assert isinstance(task, tasks.Task)
    tx, step = _adam_step(path)
    params = _params(path)
    _, _, loss, _, _ = step(params, tx.init(params), next(task.train_batches(0)))
    assert jnp.shape(loss) == ()
    assert np.isfinite(float(loss))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_real_batch_matches_abstract_batch(path):
    """A training batch has exactly the keys, shapes and dtypes of ``abstract_batch``."""
    task = _task(path)
    batch = next(task.train_batches(0))
    assert set(batch) == set(task.abstract_batch)
    for key, spec in task.abstract_batch.items():
        assert batch[key].shape == spec.shape, key
        assert batch[key].dtype == spec.dtype, key
    assert len(next(iter(batch.values()))) == task.batch_size


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_jitted_gradient_on_abstract_batch(path):
    """A jitted value_and_grad works on zeros shaped like the abstract batch."""
    task = _task(path)
    tx, step = _adam_step(path)
    params = _params(path)
    zeros = {k: jnp.zeros(s.shape, s.dtype) for k, s in task.abstract_batch.items()}
    _, _, loss, grads, _ = step(params, tx.init(params), zeros)
    assert np.isfinite(float(loss))
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(params), strict=True):
        assert g.shape == p.shape
        assert bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_num_params_counts_leaves(path):
    """num_params equals the total size of the initialised parameter leaves."""
    task = _task(path)
    expected = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(_params(path)))
    assert expected > 0
    assert tasks.num_params(task) == expected


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_train_batches_are_seeded(path):
    """The same seed gives the same first 3 batches; another seed gives different ones."""
    task = _task(path)
    first = _take(task.train_batches(0), 3)
    again = _take(task.train_batches(0), 3)
    other = _take(task.train_batches(1), 3)
    _assert_batches_equal(first, again)
    differs = any(not np.array_equal(a[k], b[k]) for a, b in zip(first, other) for k in a)
    assert differs, "train_batches(1) repeats train_batches(0)"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_train_arrays_give_the_train_batches(path):
    """Where a task names its training arrays, its batches are those arrays' rows at
    ``shuffled_indices``: what a runner gathering on the device relies on."""
    task = _task(path)
    if task.train_arrays is None:
        pytest.skip(f"{path.stem} draws its batches otherwise (no train_arrays)")
    num = tasks.base.num_examples(task.train_arrays)
    indices = tasks.base.shuffled_indices(num, task.batch_size, seed=3)
    for batch in _take(task.train_batches(3), 3):
        idx = next(indices)
        assert set(batch) == set(task.train_arrays)
        for key, array in task.train_arrays.items():
            np.testing.assert_array_equal(batch[key], array[idx])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_eval_batches_cover_split_once(path):
    """eval_batches ends, repeats itself exactly, and holds every evaluation example once."""
    cfg = _config(path)
    task = _task(path)
    batches = _take(task.eval_batches(), 100_000)
    assert 0 < len(batches) < 100_000, "eval_batches did not end"
    _assert_batches_equal(batches, list(task.eval_batches()))
    sizes = [len(next(iter(b.values()))) for b in batches]
    assert all(size == sizes[0] for size in sizes[:-1])
    assert sizes[-1] <= sizes[0]
    target = cfg._target_
    if target == "tasks.image_mlp.fashion_mnist_mlp":
        images, labels = fashion_mnist.load("test", cfg.image_size, cfg.data_dir)
        stacked = np.concatenate([b["image"] for b in batches])
        np.testing.assert_array_equal(stacked, images.reshape(len(images), -1))
        np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), labels)
    elif target in EVAL_SIZES:
        assert sum(sizes) == EVAL_SIZES[target](cfg)
    elif "image_size" in _settings(cfg):  # every image task evaluates on its whole test split
        settings = _settings(cfg)
        source = {"fashion_mnist": fashion_mnist, "mnist": mnist, "cifar10": cifar10}
        _, labels = source[settings["dataset"]].load("test", settings["image_size"],
                                                     cfg.get("data_dir"))
        assert sum(sizes) == len(labels)


def _settings(cfg) -> dict:
    """The task factory's arguments: its defaults, overridden by the config's values."""
    factory = hydra.utils.get_method(cfg._target_)
    defaults = {k: p.default for k, p in inspect.signature(factory).parameters.items()}
    return {**defaults, **{k: v for k, v in cfg.items() if k != "_target_"}}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_adam_steps_on_real_batches(path):
    """Three jitted Adam steps on real batches give finite losses and move the parameters;
    the metrics (where the task has them) are batch means in [0, 1]."""
    task = _task(path)
    tx, step = _adam_step(path)
    params = new = _params(path)
    state = tx.init(params)
    for batch in _take(task.train_batches(0), 3):
        new, state, loss, _, metrics = step(new, state, batch)
        assert np.isfinite(float(loss))
    moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params),
                                                     jax.tree.leaves(new))]
    assert any(moved)
    assert set(metrics) == ({"accuracy"} if task.metrics is not None else set())
    for name, value in metrics.items():
        assert jnp.shape(value) == (), name
        assert 0.0 <= float(value) <= 1.0, name


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_task_metadata(path):
    """Each task names its family, and num_classes exactly when it has an accuracy metric."""
    task = _task(path)
    assert task.family
    assert (task.num_classes is not None) == (task.metrics is not None)


# Evaluation split sizes of the synthetic tasks, from their configs.
EVAL_SIZES = {
    "tasks.synthetic.synthetic_mlp": lambda cfg: cfg.num_eval,
    "tasks.synthetic.wide_linear": lambda cfg: 4 * cfg.batch_size,  # all of its data
}
