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
# # Figure 8: generalisation to held-out tasks
#
# Each learned optimizer's final training loss over tuned Adam's on tasks no checkpoint was
# meta-trained on, specialists beside family-trained checkpoints, from `generalisation`
# (`make sweep SWEEP=generalisation`) or the shipped reference table.

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
from bench.analysis import normalise
from bench.figures import generalisation, sources, style
from bench.figures.paper import describe_scale

held_out = sources.load("generalisation", ORIGIN)
print(held_out.origin, held_out.note() or "")
runs = held_out.runs
if held_out.curves is not None:  # latest results: score them from their curves
    runs = normalise.add_scores(runs, held_out.curves, normalise.load_reference())

# %%
table = generalisation.generalisation_table(runs)
print(table.to_string())
fig, data = generalisation.generalisation_figure(
    table, describe_scale(runs, held_out.origin), style.hardware(runs),
    [n for n in [held_out.note()] if n])
