"""The notebooks (jupytext percent scripts) run against the shipped reference tables, and
`make paper`'s plan runs exactly the presets its scale lists."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from bench.paper import plan

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


def test_one_notebook_per_figure_group():
    assert [p.stem for p in NOTEBOOKS] == ["1_memory", "2_compute", "3_lopt_cost", "4_ablation",
                                           "5_pareto", "6_curves", "7_architecture",
                                           "8_generalisation", "9_variants"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_reference_tables(path, monkeypatch):
    text = path.read_text()
    assert text.startswith("# ---\n# jupyter:\n#   jupytext:") and "format_name: percent" in text
    assert text.count("\n# %%") >= 3
    monkeypatch.setenv("FIGURES_ORIGIN", "reference")
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))
    names = runpy.run_path(str(path), run_name="__main__")
    fig, data = names["fig"], names["data"]
    assert isinstance(fig, plt.Figure) and len(data.frame()) > 0
    plt.close("all")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_round_trips_through_jupytext(path):
    """Each script is a jupytext percent notebook paired with .ipynb: read as a notebook,
    written to .ipynb JSON and back, it comes out as the same text, cell for cell."""
    import jupytext

    text = path.read_text()
    notebook = jupytext.reads(text, fmt="py:percent")
    assert notebook.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds[0] == "markdown" and kinds.count("code") >= 2
    as_ipynb = jupytext.writes(notebook, fmt="ipynb")
    again = jupytext.writes(jupytext.reads(as_ipynb, fmt="ipynb"), fmt="py:percent")
    assert _without_version(again) == _without_version(text)


def _without_version(text: str) -> str:
    """The text less jupytext's own version stamp, which a newer jupytext rewrites."""
    return "\n".join(line for line in text.splitlines() if "jupytext_version:" not in line)


@pytest.mark.parametrize("scale", ["cpu", "gpu"])
def test_paper_plan_lists_the_scale_presets(scale, tmp_path):
    conf = tmp_path / "conf"
    (conf / "sweep").mkdir(parents=True)
    (conf / "paper").mkdir()
    (conf / "paper" / f"{scale}.yaml").write_text((ROOT / "conf/paper" / f"{scale}.yaml")
                                                  .read_text())
    for preset in ("default", "overhead", "lopt_design", "lopt_ablation"):
        (conf / "sweep" / f"{preset}.yaml").write_text("{}\n")
    steps = {s.name: s for s in plan(scale, conf, tmp_path / "results", python="py")}
    assert list(steps) == ["default", "lopt_vs_adam", "overhead", "lopt_design", "lopt_ablation",
                           "generalisation", "bench", "figures"]
    assert steps["default"].command == ["py", "-m", "bench.sweep", "sweep=default"]
    assert steps["lopt_vs_adam"].command is None and "lopt_vs_adam.yaml" in steps[
        "lopt_vs_adam"].skipped
    assert steps["bench"].skipped is None and "--sizes" in steps["bench"].command
    (tmp_path / "results" / "bench").mkdir(parents=True)
    (tmp_path / "results" / "bench" / "update_cost.parquet").write_bytes(b"")
    steps = {s.name: s for s in plan(scale, conf, tmp_path / "results", python="py")}
    assert "exists" in steps["bench"].skipped


def test_paper_plan_rejects_unknown_scale():
    with pytest.raises(ValueError, match="SCALE='tpu'"):
        plan("tpu", ROOT / "conf")


def test_repo_presets_of_the_cpu_scale_exist_or_come_from_meta_training():
    steps = plan("cpu", ROOT / "conf", ROOT / "results", python="py")
    missing = {s.name for s in steps if s.command is None and s.name != "bench"}
    assert missing <= {"lopt_vs_adam", "lopt_ablation"}
