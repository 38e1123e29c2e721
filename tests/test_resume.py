"""A sweep killed at random moments (SIGKILL) loses no finished run and resumes to completion."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

from bench.records.files import read_parquet
from tests.conftest import launch_sweep, start_sweep

OVERRIDES = ["sweep=smoke", "sweep.seeds=[0,1,2]", "sweep.isolate=false"]
PLANNED = 6  # 2 optimizers x 3 seeds


def _finished(records) -> dict[str, str]:
    """Run id -> the text of its row, for every finished run on disk."""
    return {p.stem: p.read_text() for p in records.glob("*.json")}


def test_sigkill_at_random_moments_loses_nothing(tmp_path):
    """Kill the whole sweep twice at random moments, then rerun it: one row per planned run,
    no duplicates, and every record finished before a kill unchanged."""
    records = tmp_path / "smoke" / "records"
    rng = random.Random(0)
    seen: dict[str, str] = {}
    for _ in range(2):
        proc = start_sweep(*OVERRIDES, f"results_dir={tmp_path}", stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(2.5, 6.0))
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and anything it started
        proc.wait()
        now = _finished(records)
        # Every record finished before this kill is still there, byte for byte.
        assert all(now.get(rid) == text for rid, text in seen.items())
        for text in now.values():
            json.loads(text)  # no partial record
        seen = now
    done = launch_sweep(*OVERRIDES, f"results_dir={tmp_path}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"{len(seen)} already recorded and skipped" in done.stdout
    runs = read_parquet(tmp_path / "smoke" / "runs.parquet")
    assert len(runs) == PLANNED and runs.run_id.is_unique
    assert (runs.status == "ok").all()
    final = _finished(records)
    assert all(final[rid] == text for rid, text in seen.items())
