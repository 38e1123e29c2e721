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
# # Figure 3: the per-parameter network's cost
#
# small_fc_lopt's overhead against hidden size, input features and execution path, from the
# `lopt_design` sweep (timing only).

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
from bench.figures import lopt_cost, sources
from bench.figures.paper import describe_scale

design = sources.load("lopt_design", ORIGIN)
print(design.origin, design.note() or "")

# %%
fig, data = lopt_cost.lopt_cost_figure(design.runs, describe_scale(design.runs, design.origin),
                                       [n for n in [design.note()] if n])
data.frame()
