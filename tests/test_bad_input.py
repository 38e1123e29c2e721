"""Bad settings fail early with messages that name the culprit and say what to do."""

from __future__ import annotations

import json
import re

import pytest
from omegaconf import OmegaConf

from bench.train.settings import RunSettings
from optimizers import build_optimizer
from optimizers.build import OptimizerConfigError
from tasks.data import fashion_mnist
from tests.conftest import launch_sweep


@pytest.fixture
def adam_cfg(conf_dir):
    """Adam's config as loaded from conf/optimizer/adam.yaml."""
    return OmegaConf.load(conf_dir / "optimizer" / "adam.yaml")


def test_negative_learning_rate(adam_cfg):
    """learning_rate=-0.1 raises OptimizerConfigError naming the key and the value."""
    adam_cfg.learning_rate = -0.1
    with pytest.raises(OptimizerConfigError) as info:
        build_optimizer(adam_cfg)
    assert "learning_rate" in str(info.value)
    assert "-0.1" in str(info.value)


def test_non_numeric_learning_rate(adam_cfg):
    """learning_rate='abc' raises OptimizerConfigError naming the key."""
    adam_cfg.learning_rate = "abc"
    with pytest.raises(OptimizerConfigError, match="learning_rate"):
        build_optimizer(adam_cfg)


def test_unknown_target(adam_cfg):
    """An unknown _target_ raises OptimizerConfigError naming it."""
    adam_cfg._target_ = "optax.does_not_exist"
    with pytest.raises(OptimizerConfigError, match="optax.does_not_exist"):
        build_optimizer(adam_cfg)


def test_b1_outside_unit_interval(adam_cfg):
    """b1=1.5 raises OptimizerConfigError naming b1."""
    adam_cfg.b1 = 1.5
    with pytest.raises(OptimizerConfigError, match="b1"):
        build_optimizer(adam_cfg)


def test_missing_dataset_says_how_to_get_it(tmp_path):
    """An empty data folder raises DatasetNotFoundError with installation instructions."""
    with pytest.raises(fashion_mnist.DatasetNotFoundError) as info:
        fashion_mnist.find_data_dir(tmp_path)
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "FASHION_MNIST_DIR" in message
    assert str(tmp_path) in message


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"steps": -1}, "run.steps"),
        ({"eval_every": 0}, "run.eval_every"),
        ({"chunk_steps": 0}, "run.chunk_steps"),
        ({"timing_steps": 2.5}, "run.timing_steps"),
        ({"timing_protocol": "wall"}, "run.timing_protocol"),
        ({"divergence_factor": 1.0}, "run.divergence_factor"),
    ],
)
def test_run_settings_reject_bad_values(settings, key):
    """RunSettings raises ValueError naming the offending run.* key."""
    with pytest.raises(ValueError, match=re.escape(key)):
        RunSettings(**settings)


def test_run_settings_allow_timing_only():
    """steps=0 is accepted: it asks for a timing-only run."""
    assert RunSettings(steps=0).steps == 0


@pytest.fixture
def results_with_a_record(tmp_path):
    """A results folder holding one finished record of the smoke sweep: (folder, its text)."""
    records = tmp_path / "smoke" / "records"
    records.mkdir(parents=True)
    record = records / "0123456789abcdef.json"
    record.write_text(json.dumps({"run_id": record.stem, "status": "ok", "optimizer": "sgd",
                                  "task": "synthetic", "seed": 0}))
    return tmp_path, record


@pytest.mark.parametrize(("override", "named"), [
    ("run.stepz=5", "run.stepz"),                   # unknown key (Hydra's struct check)
    ("+run.stepz=5", "stepz"),                      # unknown key slipped past Hydra
    ("run.steps=abc", "run.steps='abc'"),           # wrong type
    ("run.steps=-5", "run.steps=-5"),               # out of range
    ("sweep.jobs=0", "sweep.jobs=0"),
])
def test_bad_sweep_input_is_named_and_loses_nothing(results_with_a_record, override, named):
    """Each bad input stops the sweep with a message naming it; the finished record stays."""
    folder, record = results_with_a_record
    before = record.read_text()
    proc = launch_sweep("sweep=smoke", f"results_dir={folder}", override, timeout=120)
    assert proc.returncode != 0
    assert named in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]
    assert record.read_text() == before
    assert sorted(p.name for p in record.parent.iterdir()) == [record.name]


def test_unwritable_results_folder_is_named(tmp_path):
    """A results folder that cannot be created or written is named before any work."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = launch_sweep("sweep=smoke", f"results_dir={blocker}", timeout=120)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "not writable" in output and str(blocker) in output, output[-2000:]
