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
# # Figure 7: learned optimizer architectures
#
# Inputs, network, meta-parameters (from init_meta), state per parameter (from the optax
# state) and FLOPs per parameter of each learned optimizer.

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
from bench.figures import architecture, sources

bench = sources.load("update_cost", ORIGIN)
table = architecture.architecture_table(bench.runs)
print(architecture.architecture_markdown(table))

# %%
fig, data = architecture.architecture_figure(table)
