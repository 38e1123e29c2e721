"""Figure 7, the learned optimizers' architectures: per-parameter inputs, network,
meta-parameters (counted from ``init_meta``), state floats per parameter (measured from the
optax state on a 256 x 128 weight and its bias) and the per-parameter network's FLOPs.

FLOPs per parameter are the matrix-product FLOPs of the network applied to every parameter,
2 * sum(fan_in * fan_out) over its dense layers (the count REFERENCE.md quotes, e.g. about
360 for small_fc_lopt); per-tensor networks (LSTMs) cost per tensor, not per parameter, and are
listed under the network. Where the update-cost benchmark table is present its XLA-counted
update FLOPs per parameter are joined as a measured column.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bench.figures import style

ARCHITECTURES = ("small_fc_lopt", "mlp_lopt", "rnn_mlp_lopt", "nn_adam")
COLUMNS = ("optimizer", "per_param_inputs", "network", "meta_params",
           "state_floats_per_param_matrix", "state_floats_per_param_vector",
           "flops_per_param_network")


def _dense_layers(tree) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of each dense layer in a list of {"w", "b"} layers."""
    return [tuple(int(d) for d in layer["w"].shape) for layer in tree]


def _networks(name: str, theta) -> tuple[list[tuple[int, int]], int | None]:
    """The per-parameter MLP's layers and the per-tensor LSTM's hidden size (or None)."""
    per_param = {"small_fc_lopt": lambda t: t["network"], "mlp_lopt": lambda t: t,
                 "rnn_mlp_lopt": lambda t: t["mlp"], "nn_adam": lambda t: []}[name](theta)
    lstm = theta.get("lstm") if isinstance(theta, dict) else None
    hidden = int(lstm_hidden(lstm)) if lstm is not None else None
    return _dense_layers(per_param), hidden


def lstm_hidden(lstm) -> int:
    """Hidden size of an LSTM's parameters (its bias holds the four gates)."""
    import jax

    leaves = jax.tree.leaves(lstm)
    return min(leaf.shape[-1] for leaf in leaves) // 4 if leaves else 0


def architecture_table(update_cost: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per learned architecture at its default config."""
    import jax
    import jax.numpy as jnp

    from bench.measure.memory import state_summary
    from optimizers.learned import get_architecture
    from optimizers.learned.common import count_params

    shapes = {"w": jax.ShapeDtypeStruct((256, 128), jnp.float32),
              "b": jax.ShapeDtypeStruct((128,), jnp.float32)}
    rows = []
    for name in ARCHITECTURES:
        module = get_architecture(name)
        config = module.Config()
        # shapes only (jax.eval_shape): nothing is compiled or run
        theta = jax.eval_shape(lambda m=module, c=config: m.init_meta(jax.random.key(0), c))
        layers, hidden = _networks(name, theta)
        state = state_summary(lambda p, m=module, c=config: m.to_optax(
            m.init_meta(jax.random.key(0), c), c).init(p), shapes)
        sizes = [layers[0][0], *[out for _, out in layers]] if layers else []
        network = " -> ".join(map(str, sizes)) if sizes else "Adam's update, no per-parameter MLP"
        if hidden:
            network = f"per-tensor LSTM ({hidden}); " + network
        rows.append({
            "optimizer": name, "per_param_inputs": layers[0][0] if layers else 0,
            "network": network, "meta_params": count_params(theta),
            "state_floats_per_param_matrix": state["opt_state_floats_per_param_matrix"],
            "state_floats_per_param_vector": state["opt_state_floats_per_param_vector"],
            "flops_per_param_network": 2 * sum(a * b for a, b in layers),
        })
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if update_cost is not None and {"update_flops", "num_params"} <= set(update_cost):
        # each learned optimizer's default design on its fast path: not a reference path
        # (stacked, nn_adam's direct) and no design option (small_fc_lopt/no_factored ...)
        default = [not ({k for k, v in (arm or {}).items() if v is not None} - {"path"})
                   and (arm or {}).get("path") not in ("stacked", "direct")
                   for arm in style.arms(update_cost)]
        rows = update_cost[np.array(default, dtype=bool)]
        measured = rows.assign(optimizer=style.names(rows),
                               xla=rows.update_flops / rows.num_params)
        # the largest size benchmarked; small_fc_lopt on its default (unrolled) path
        measured = measured.sort_values("num_params").groupby("optimizer").xla.last()
        table["update_flops_per_param_xla"] = table.optimizer.map(measured)
    return table


def architecture_markdown(table: pd.DataFrame) -> str:
    """The architecture table as Markdown."""
    head = ["optimizer", "per-parameter inputs", "network", "meta-parameters",
            "state floats/param (matrix)", "state floats/param (vector)",
            "network FLOPs/param"]
    xla = "update_flops_per_param_xla" in table
    if xla:
        head.append("update FLOPs/param (XLA)")
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---|---:|---:|---:|---:|"
             + ("---:|" if xla else "")]
    for row in table.itertuples():
        cells = [row.optimizer, str(row.per_param_inputs), row.network, f"{row.meta_params:,}",
                 f"{row.state_floats_per_param_matrix:.3f}",
                 f"{row.state_floats_per_param_vector:.3f}", f"{row.flops_per_param_network:,}"]
        if xla:
            value = row.update_flops_per_param_xla
            cells.append("" if pd.isna(value) else f"{value:,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def architecture_figure(table: pd.DataFrame, hardware: str = "counted from the code",
                        scale: str = "default configs; state on a 256x128 weight + bias"
                        ) -> tuple[plt.Figure, style.PlotData]:
    """The table drawn as a figure (for the index page and the PDF set)."""
    style.apply()
    data = style.PlotData()
    fig, ax = plt.subplots(figsize=(13, 0.5 * len(table) + 1.6))
    ax.axis("off")
    columns = [c for c in table.columns if c != "optimizer"]
    cells = [[f"{v:,.3f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
              for v in row] for row in table[columns].itertuples(index=False)]
    drawn = ax.table(cellText=cells, rowLabels=table.optimizer.tolist(),
                     colLabels=[c.replace("_", " ") for c in columns], loc="center")
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    drawn.scale(1, 1.5)
    for column in ("meta_params", "state_floats_per_param_matrix", "flops_per_param_network"):
        data.add("table", column, "table", table.optimizer.tolist(), table[column].to_numpy())
    fig.suptitle("Learned optimizers: inputs, network, meta-parameters, state and FLOPs per "
                 "parameter")
    style.footnote(fig, hardware, scale)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig, data
