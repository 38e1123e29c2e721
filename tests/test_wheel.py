"""The package as a user installs it: a wheel built from the repository, installed (not
editable) into a fresh environment, carries the shipped checkpoints, and the README's example
of a learned optimizer in one's own training loop runs from it."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import REPO_ROOT

SOURCES = ("pyproject.toml", "README.md", "bench", "optimizers", "tasks")


def readme_example() -> str:
    """The README's own-training-loop example, exactly as shown."""
    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index("```python\n", readme.index("## A learned optimizer in your own code"))
    return readme[start + len("```python\n"):readme.index("```", start + 3)]


def run(*command: str, cwd: Path) -> str:
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{command}: {proc.stderr[-3000:]}{proc.stdout[-1000:]}"
    return proc.stdout


def test_the_readme_example_runs_from_an_installed_wheel(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (REPO_ROOT / name).is_dir() else shutil.copyfile
        kwargs = {"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree \
            else {}
        copy(REPO_ROOT / name, source / name, **kwargs)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "-w", str(tmp_path / "dist"), str(source), cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("*.whl"))

    # A fresh environment whose only view of this project is the installed wheel; its
    # dependencies (JAX, optax, ...) come from the test's own environment's site-packages as a
    # plain path, so that environment's editable install of the project is not seen.
    fresh = tmp_path / "fresh"
    run(sys.executable, "-m", "venv", "--without-pip", str(fresh), cwd=tmp_path)
    python = fresh / "bin" / "python"
    site = Path(run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=tmp_path).strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
        str(wheel), cwd=tmp_path)

    where = run(str(python), "-c", "import optimizers, tasks, bench; print(optimizers.__file__)",
                cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(site), where
    (tmp_path / "example.py").write_text(readme_example())
    first, last = map(float, run(str(python), "example.py", cwd=tmp_path).split())
    assert math.isfinite(last) and last < first
