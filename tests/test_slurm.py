"""The smoke preset through the Slurm launcher on a real cluster, against a local run.

Runs where a Slurm cluster answers (`sbatch` on the PATH and `sinfo` working); `.ci/slurm-cluster
start` brings up a one-node cluster on loopback, as CI does before the tests. The jobs ask for
one CPU each and no GPU; $LOPT_SLURM_PARTITION names a partition (default: the cluster's).
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from bench.records.files import read_parquet
from tests.conftest import launch_sweep


def _cluster_answers() -> bool:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


pytestmark = pytest.mark.skipif(
    not _cluster_answers(),
    reason="no Slurm cluster answers here (.ci/slurm-cluster start brings one up)")

SMOKE = ("sweep=smoke", "sweep.figures=false")
LOSSES = ("first_train_loss", "final_train_loss", "final_eval_loss", "best_eval_loss")
STAMP = re.compile(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\) - "
                   r"(Starting with JobEnvironment|Job completed successfully)")


def _job_lifetimes(folder) -> list[tuple[datetime.datetime, datetime.datetime]]:
    """(start, end) of every Slurm job of the sweep, from submitit's job logs."""
    spans = []
    for log in sorted(folder.glob("logs/multirun/*/.submitit/*/*_log.out")):
        stamps = {kind: datetime.datetime.strptime(when, "%Y-%m-%d %H:%M:%S,%f")
                  for when, kind in STAMP.findall(log.read_text())}
        spans.append((stamps["Starting with JobEnvironment"],
                      stamps["Job completed successfully"]))
    return spans


def test_smoke_preset_in_two_slurm_shards_equals_a_local_run(tmp_path):
    """Two shards as Slurm jobs into one folder: they run side by side (the folder lock lets
    them), their merged tables hold exactly the runs of a local sweep, with its losses."""
    partition = os.environ.get("LOPT_SLURM_PARTITION")
    slurm = launch_sweep(
        "-m", "hydra/launcher=slurm", *SMOKE, f"results_dir={tmp_path / 'slurm'}",
        "sweep.num_shards=2", "sweep.shard=range(2)", "hydra.launcher.gpus_per_node=null",
        "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
        "hydra.launcher.timeout_min=10", *([f"hydra.launcher.partition={partition}"]
                                           if partition else []), timeout=600)
    assert slurm.returncode == 0, (slurm.stdout + slurm.stderr)[-3000:]
    local = launch_sweep(*SMOKE, "sweep.isolate=false", f"results_dir={tmp_path / 'local'}")
    assert local.returncode == 0, (local.stdout + local.stderr)[-3000:]

    folder = tmp_path / "slurm" / "smoke"
    scripts = list(folder.glob("logs/multirun/*/.submitit/*/*_submission.sh"))
    assert scripts and all("#SBATCH" in p.read_text() for p in scripts)  # real Slurm jobs
    spans = _job_lifetimes(folder)
    assert len(spans) == 2
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans
    logs = "".join(p.read_text() for p in folder.glob("logs/multirun/*/.submitit/*/*.out"))
    assert "shard 0 of 2" in logs and "shard 1 of 2" in logs

    sharded = read_parquet(folder / "runs.parquet").set_index("run_id").sort_index()
    alone = read_parquet(tmp_path / "local" / "smoke" / "runs.parquet")
    alone = alone.set_index("run_id").sort_index()
    assert list(sharded.index) == list(alone.index)
    assert (sharded.status == "ok").all() and sharded.timing_exclusive.all()
    for column in LOSSES:
        np.testing.assert_allclose(sharded[column], alone[column], rtol=1e-6, err_msg=column)
    curves = read_parquet(folder / "curves.parquet")
    assert set(curves.run_id) == set(sharded.index)
