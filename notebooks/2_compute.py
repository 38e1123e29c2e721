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
# # Figure 2: compute
#
# Step-time overhead relative to SGD and to Adam against batch size and parameter count,
# from the `overhead` sweep and the update-cost benchmark.

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
from bench.figures import compute, sources
from bench.figures.paper import describe_scale

overhead = sources.load("overhead", ORIGIN)
bench = sources.load("update_cost", ORIGIN)
notes = [n for n in (overhead.note(), bench.note()) if n]
print(overhead.origin, bench.origin, *notes, sep="\n")

# %%
table = compute.overhead_table(overhead.runs) if not overhead.missing else None
fig, data = compute.compute_figure(overhead.runs, bench.runs,
                                   describe_scale(overhead.runs, overhead.origin), notes)
data.frame().head()
