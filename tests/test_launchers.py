"""Sweeps in parallel on one machine and in shards under Hydra's submitit launcher."""

from __future__ import annotations

import fcntl
import json
import socket
import subprocess
import threading
import time

import hydra
import pytest
from hydra.utils import get_class

from bench.records.files import read_parquet
from tests.conftest import CONF_DIR, launch_sweep, start_sweep

LAUNCHERS = sorted((CONF_DIR / "hydra" / "launcher").glob("*.yaml"))
# Two tiny throughput-only runs (no step timing): they may share the machine.
TINY = ["sweep=smoke", "optimizer=adam", "sweep.seeds=[0,1]", "run.timing=false",
        "sweep.figures=false"]


@pytest.mark.parametrize("path", LAUNCHERS, ids=lambda p: p.stem)
def test_launcher_config_composes_to_a_launcher(path):
    """Every launcher config composes over the plugin's own and names a launcher class."""
    with hydra.initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra.compose(config_name="config", overrides=[f"hydra/launcher={path.stem}"],
                            return_hydra_config=True)
    launcher = cfg.hydra.launcher
    cls = get_class(launcher._target_)
    assert cls.__name__.endswith("Launcher")
    assert launcher.timeout_min > 0


def _output(proc) -> str:
    return (proc.stdout + proc.stderr)[-3000:]


def test_parallel_jobs_record_their_concurrency(tmp_path):
    """sweep.jobs=2 runs throughput-only runs side by side and the rows say so."""
    proc = launch_sweep(*TINY, "sweep.jobs=2", f"results_dir={tmp_path}")
    assert proc.returncode == 0, _output(proc)
    assert "up to 2 workers at once" in proc.stdout
    runs = read_parquet(tmp_path / "smoke" / "runs.parquet")
    assert len(runs) == 2 and (runs.status == "ok").all()
    assert not runs.timing_exclusive.any()
    assert (runs.concurrent_jobs == 2).all()
    assert runs.step_time_median_s.isna().all()  # throughput only: no step times
    assert (runs.process_start_s > 0).all() and (runs.run_s > 0).all()


def test_submitit_local_shards_merge_into_one_table(tmp_path):
    """Two shards run as separate jobs by submitit's local executor write into one results
    folder; the tables hold every run once."""
    proc = launch_sweep("-m", "hydra/launcher=local", *TINY, "sweep.num_shards=2",
                        "sweep.shard=0,1", "sweep.isolate=false", f"results_dir={tmp_path}")
    assert proc.returncode == 0, _output(proc)
    folder = tmp_path / "smoke"
    runs = read_parquet(folder / "runs.parquet")
    assert sorted(runs.seed) == [0, 1] and runs.run_id.is_unique
    assert (runs.status == "ok").all()
    jobs = sorted(p.name for p in (folder / "logs" / "multirun").glob("*/[0-9]*"))
    assert jobs == ["0", "1"]
    logs = "".join(p.read_text() for p in folder.glob("logs/multirun/*/.submitit/*/*.out"))
    assert "shard 0 of 2" in logs and "shard 1 of 2" in logs


def test_shards_on_one_host_take_turns_on_its_cpu(tmp_path):
    """While another shard of the sweep times a run on this host's CPU (its turn lock held
    here), a shard with a timed run waits, says so, and runs once the CPU is free."""
    folder = tmp_path / "smoke"
    folder.mkdir()
    with open(folder / f".cpu-{socket.gethostname()}.turn", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        sweep = start_sweep("sweep=smoke", "sweep.num_shards=2", "sweep.shard=0",
                            "sweep.figures=false", f"results_dir={tmp_path}",
                            stderr=subprocess.STDOUT)
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(sweep.stdout), daemon=True).start()
        deadline = time.monotonic() + 120
        while not any("waiting for the cpu" in line for line in lines):
            assert sweep.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        time.sleep(1.0)
        assert not list((folder / "records").glob("*.json"))  # nothing ran meanwhile
    assert sweep.wait(timeout=120) == 0, "".join(lines)
    rows = [json.loads(p.read_text()) for p in (folder / "records").glob("*.json")]
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["timing_exclusive"]
