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
# # Figure 9: faster small_fc_lopt variants
#
# Each family-trained design variant's loss over the exact design's on the held-out tasks
# (`make sweep SWEEP=generalisation`), against its update time over Adam's in the update
# benchmark (`make bench`), or from the shipped reference tables.

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
from bench.figures import sources, variant_tradeoff
from bench.figures.paper import describe_scale

held_out, bench = sources.load("generalisation", ORIGIN), sources.load("update_cost", ORIGIN)
print(held_out.origin, bench.origin)

# %%
table = variant_tradeoff.tradeoff_table(held_out.runs, bench.runs)
print(table.to_string())
fig, data = variant_tradeoff.tradeoff_figure(
    held_out.runs, bench.runs, describe_scale(held_out.runs, held_out.origin),
    [n for n in (held_out.note(), bench.note()) if n])
