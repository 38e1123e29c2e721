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
# # Figure 1: memory
#
# Optimizer-state floats per parameter of every optimizer config, for a matrix and a vector,
# counted from the optax state's shapes (nothing is trained).

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
from bench.figures import memory

table = memory.memory_table()
print(memory.memory_markdown(table))

# %%
fig, data = memory.memory_figure(table)
data.frame().head()
