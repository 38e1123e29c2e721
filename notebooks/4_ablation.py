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
# # Figure 4: feature ablations
#
# small_fc_lopt's final loss with feature groups removed, mean over seeds with bootstrap
# intervals, from `lopt_ablation` (meta-trained variants) or the shipped reference table.

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
from bench.figures import ablation, sources
from bench.figures.paper import describe_scale

abl = sources.load("lopt_ablation", ORIGIN)
print(abl.origin, abl.note() or "")

# %%
if not abl.missing:
    print(ablation.ablation_table(abl.runs).to_string())
fig, data = ablation.ablation_figure(abl.runs, describe_scale(abl.runs, abl.origin),
                                     [n for n in [abl.note()] if n])
