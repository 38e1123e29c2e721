"""Figure 1, memory: optimizer-state floats per parameter of every configured optimizer, for a
matrix and for a vector, counted exactly from the state pytree (``bench.measure.memory``).

The table is measured from the configs in conf/optimizer/ (shapes only, nothing is trained),
on a 256 x 128 weight and a 128-element bias: the shapes REFERENCE measurements used, and large
enough that Adafactor factors the matrix (its min_dim_size_to_factor is 128).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bench.figures import style

MATRIX_SHAPE = (256, 128)
VECTOR_SHAPE = (128,)
CONFIGS = Path("conf/optimizer")


def memory_table(configs: Path = CONFIGS, matrix: tuple[int, ...] = MATRIX_SHAPE,
                 vector: tuple[int, ...] = VECTOR_SHAPE) -> pd.DataFrame:
    """Per optimizer config: state floats per parameter for the matrix, the vector and both."""
    import jax
    import jax.numpy as jnp
    from omegaconf import OmegaConf

    from bench.measure.memory import state_summary
    from optimizers import build_optimizer

    files = sorted(configs.glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no optimizer configs in {configs}")
    shapes = {"w": jax.ShapeDtypeStruct(matrix, jnp.float32),
              "b": jax.ShapeDtypeStruct(vector, jnp.float32)}
    rows = []
    for path in files:
        cfg = OmegaConf.load(path)
        # built inside the shape-only trace, so learned optimizers' initialisation is never
        # compiled or run: only the state's shapes are needed
        summary = state_summary(lambda p, cfg=cfg, name=path.stem: build_optimizer(
            cfg, prefix=name).init(p), shapes)
        rows.append({
            "optimizer": path.stem, "learned": style.is_learned(path.stem),
            "matrix": summary["opt_state_floats_per_param_matrix"],
            "vector": summary["opt_state_floats_per_param_vector"],
            "both": summary["opt_state_floats_per_param"],
            "state_bytes": summary["opt_state_bytes"],
            "matrix_shape": "x".join(map(str, matrix)), "vector_shape": "x".join(map(str, vector)),
        })
    table = pd.DataFrame(rows)
    return table.sort_values(["learned", "matrix", "optimizer"]).reset_index(drop=True)


def memory_markdown(table: pd.DataFrame) -> str:
    """The memory table as Markdown."""
    shape_m, shape_v = table.matrix_shape.iloc[0], table.vector_shape.iloc[0]
    lines = [f"| optimizer | kind | matrix ({shape_m}) | vector ({shape_v}) | both |",
             "|---|---|---:|---:|---:|"]
    for row in table.itertuples():
        kind = "learned" if row.learned else "hand-designed"
        lines.append(f"| {row.optimizer} | {kind} | {row.matrix:.3f} | {row.vector:.3f} "
                     f"| {row.both:.3f} |")
    return "\n".join(lines) + "\n"


def memory_figure(table: pd.DataFrame, hardware: str = "shapes only (device-independent)",
                  scale: str = "one 256x128 matrix and a 128 vector") -> tuple[plt.Figure,
                                                                            style.PlotData]:
    """Two bar panels, matrices and vectors: state floats per parameter per optimizer."""
    style.apply()
    data = style.PlotData()
    labels = table.optimizer.tolist()
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.33 * len(labels) + 2.0), sharey=True)
    for ax, kind in zip(axes, ("matrix", "vector")):
        style.bars(ax, labels, table[kind].to_numpy(), kind, "floats_per_param", data)
        for i, value in enumerate(table[kind]):
            ax.text(value, i, f" {value:.2f}", va="center", fontsize=8)
        ax.set_yticks(range(len(labels)), labels)
        for tick, learned in zip(ax.get_yticklabels(), table.learned):
            tick.set_fontweight("bold" if learned else "normal")
        shape = table[f"{kind}_shape"].iloc[0]
        ax.set_xlabel(f"optimizer state, floats per parameter ({kind} {shape})")
        ax.set_title(f"state per {kind} parameter")
        ax.set_xlim(0, max(1.0, float(np.nanmax(table[kind]))) * 1.18)
        ax.grid(alpha=0.3, axis="x")
    axes[0].invert_yaxis()
    fig.suptitle("Memory: optimizer-state floats per parameter (learned optimizers in bold)")
    style.footnote(fig, hardware, scale)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig, data
