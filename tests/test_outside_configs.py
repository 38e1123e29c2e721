"""A task and an optimizer defined outside the repository, in a user's own module and config
folder, run in a sweep through ``hydra.searchpath`` (the way Hydra users add configs)."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.records.files import read_parquet
from tests.conftest import REPO_ROOT


def _readme_example() -> str:
    """The user's module exactly as docs/sweeps.md shows it."""
    readme = (REPO_ROOT / "docs" / "sweeps.md").read_text()
    start = readme.index("# ~/mine/my_lib.py (on PYTHONPATH)\n")
    return readme[start:readme.index("```", start)]


def test_outside_task_and_optimizer_run_through_the_searchpath(tmp_path):
    package = tmp_path / "mine"
    (package / "conf" / "task").mkdir(parents=True)
    (package / "conf" / "optimizer").mkdir(parents=True)
    (package / "my_lib.py").write_text(_readme_example())
    (package / "conf" / "task" / "my_linreg.yaml").write_text(
        "_target_: my_lib.linreg\n")
    (package / "conf" / "optimizer" / "my_sgd.yaml").write_text(
        "_target_: my_lib.my_sgd\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package), str(REPO_ROOT)])}
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.sweep", "sweep=smoke", "task=my_linreg",
         "optimizer=my_sgd", f"hydra.searchpath=[file://{package / 'conf'}]",
         f"results_dir={results}", "sweep.isolate=false", "sweep.figures=false",
         "run.timing=false"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    runs = read_parquet(results / "smoke" / "runs.parquet")
    assert runs[["task", "optimizer", "status"]].values.tolist() == [["my_linreg", "my_sgd", "ok"]]
    assert runs.task_family.tolist() == ["my_linreg"]
    assert runs.final_train_loss.iloc[0] < runs.first_train_loss.iloc[0]
