"""Shared fixtures: the repository root, a sweep launcher and cached tiny runs."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Tests check what programs compute, not how fast they run: XLA compiles them without LLVM's
# optimisation passes, which takes about a fifth off the suite's wall time. Set before any
# backend starts, and inherited by every sweep and worker process the tests launch.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(
        [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip()

from bench.sweep.compile_cache import enable as enable_compile_cache
from bench.train.run import run_one
from bench.train.settings import RunResult, RunSettings
from optimizers import build_optimizer
from tasks.synthetic import synthetic_mlp

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"

# One persistent compilation cache for the session, in this process and in every sweep the
# tests start: they compile the same small programs over and over.
if "LOPT_COMPILE_CACHE" not in os.environ:
    os.environ["LOPT_COMPILE_CACHE"] = tempfile.mkdtemp(prefix="lopt-tests-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["LOPT_COMPILE_CACHE"], ignore_errors=True)
enable_compile_cache(os.environ["LOPT_COMPILE_CACHE"])

# A run short enough for unit tests: three training chunks (10, 10, 5 steps) so that the last
# evaluation falls at the end of training and not on a multiple of eval_every.
TINY_SETTINGS = {
    "steps": 25,
    "eval_every": 10,
    "chunk_steps": 10,
    "timing_block": 5,
    "timing_steps": 10,
    "warmup_steps": 1,
}
ADAM = {"_target_": "optax.adam", "learning_rate": 0.01}


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding conf/, bench/ and tasks/)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def conf_dir() -> Path:
    """The Hydra config folder."""
    return CONF_DIR


def launch_sweep(*overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m bench.sweep OVERRIDES...`` from the repository root and wait for it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bench.sweep", *overrides],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_sweep(*overrides: str, **popen: Any) -> subprocess.Popen:
    """Start ``python -m bench.sweep OVERRIDES...`` from the repository root without waiting;
    ``popen`` goes to ``subprocess.Popen`` (by default stdout and stderr are piped, as text)."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
    return subprocess.Popen([sys.executable, "-m", "bench.sweep", *overrides], cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, **popen)


@pytest.fixture(scope="session")
def run_sweep() -> Callable[..., subprocess.CompletedProcess]:
    """A function that runs the sweep entry point as a subprocess (see ``launch_sweep``)."""
    return launch_sweep


@pytest.fixture(scope="session")
def synthetic_task():
    """The synthetic test task with its default settings."""
    return synthetic_mlp()


@pytest.fixture(scope="session")
def tiny_run(synthetic_task) -> Callable[..., RunResult]:
    """``tiny_run(optimizer_cfg, seed=0, fresh=False, **settings)``: a cached short run.

    Runs with equal arguments are shared across tests (each costs a few compiles); pass
    ``fresh=True`` to run again without touching the cache.
    """
    cache: dict[str, RunResult] = {}

    def _run(optimizer: dict, seed: int = 0, fresh: bool = False, **overrides) -> RunResult:
        settings = {**TINY_SETTINGS, **overrides}
        key = json.dumps([optimizer, seed, settings], sort_keys=True)
        if fresh or key not in cache:
            result = run_one(synthetic_task, build_optimizer(optimizer), RunSettings(**settings),
                             seed=seed)
            if fresh:
                return result
            cache[key] = result
        return cache[key]

    return _run


# The longest test files (about a minute or more each on 2 cores) run first, so that with
# `make test`'s one worker per core no long file is left running alone at the end.
LONGEST_FIRST = ("test_faults.py", "test_sweep.py", "test_task_configs.py",
                 "test_small_fc_lopt.py", "test_measurement.py", "test_meta.py",
                 "test_learned_architectures.py", "test_paper_figures.py", "test_launchers.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the test files longest first; tests keep their order within a file."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
