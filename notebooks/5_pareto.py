# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Figure 5: Pareto fronts
#
# Performance against step time and against optimizer-state memory, hand-designed and
# learned optimizers, from `default` and `lopt_vs_adam`.

# %%
import os
import sys
from pathlib import Path

# Run from the repository root (a notebook server starts in notebooks/).
ROOT = Path.cwd() if (Path.cwd() / "bench").is_dir() else Path.cwd().parent
os.chdir(ROOT)
sys.path.insert(0, str(ROOT))
# "latest": results/ where present, else the shipped reference tables; "reference": those only.
ORIGIN = os.environ.get("FIGURES_ORIGIN", "latest")

# %%
import pandas as pd

from bench.figures import pareto, sources

tables = [sources.load(name, ORIGIN) for name in ("default", "lopt_vs_adam")]
present = [t for t in tables if not t.missing]
runs = pd.concat([t.runs for t in present], ignore_index=True)
curves = pd.concat([t.curves for t in present if t.curves is not None], ignore_index=True)
notes = [n for t in tables if (n := t.note())]
print(*notes, sep="\n")

# %%
scored, performance, note = pareto.normalise(runs, curves)
print(pareto.pareto_table(scored, performance).to_string())

# %%
fig, data = pareto.pareto_figure(runs, curves, "see the tables above", notes)
