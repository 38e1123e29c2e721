"""One visual style for every figure: a fixed colour per optimizer, learned optimizers marked
apart from hand-designed ones, readable fonts, and a footnote with hardware and scale.

Every plotted series is tagged (``tag``) with its panel and series name and recorded in a
``PlotData`` table, which is written beside the figure as CSV; tests read the tagged artists
back and compare them with that table and with the source tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colors  # noqa: E402

# The learned architectures (optimizers/learned/ARCHITECTURES), listed here so that drawing a
# figure does not import JAX.
LEARNED = ("small_fc_lopt", "mlp_lopt", "rnn_mlp_lopt", "nn_adam", "velo")
# A fixed colour per optimizer, the same in every figure (tab10 / tab20 colours).
COLOURS = {
    "sgd": "#7f7f7f", "sgdm": "#bcbd22", "adam": "#1f77b4", "adamw": "#17becf",
    "nadamw": "#9467bd", "rmsprop": "#8c564b", "adagrad": "#e377c2", "adafactor": "#ff7f0e",
    "lion": "#2ca02c", "small_fc_lopt": "#d62728", "mlp_lopt": "#393b79",
    "rnn_mlp_lopt": "#8c6d31", "nn_adam": "#843c39", "velo": "#637939",
}
_SPARE = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
          "#dbdb8d", "#9edae5", "#5254a3")
HAND_MARKER, LEARNED_MARKER = "o", "^"
RC = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 8,
      "xtick.labelsize": 9, "ytick.labelsize": 9, "figure.dpi": 100}


def base_name(label: str) -> str:
    """The optimizer a run label names: ``adam(learning_rate=0.01)`` -> ``adam``,
    ``small_fc_lopt/unrolled`` -> ``small_fc_lopt``."""
    return re.split(r"[(/\[]", str(label), maxsplit=1)[0].strip()


def is_learned(label: str) -> bool:
    return base_name(label) in LEARNED


def colour(label: str) -> str:
    """The optimizer's colour; unknown names get a stable spare colour."""
    name = base_name(label)
    if name in COLOURS:
        return COLOURS[name]
    return _SPARE[sum(map(ord, name)) % len(_SPARE)]


def _arm_order(label: str) -> tuple:
    """Sort key of an arm: the numbers in its label (``adam(learning_rate=0.01)`` -> 0.01)."""
    numbers = re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", str(label))
    return tuple(float(x) for x in numbers), str(label)


def arm_colours(labels: Any) -> dict[str, str]:
    """A colour per label: the optimizer's own colour, and where one optimizer has several arms
    (learning rates, say), its colour shaded from light (smallest value) to dark (largest) so
    that the arms can be told apart while the optimizer stays recognisable."""
    groups: dict[str, list[str]] = {}
    for label in dict.fromkeys(map(str, labels)):
        groups.setdefault(base_name(label), []).append(label)
    out = {}
    for members in groups.values():
        if len(members) == 1:
            out[members[0]] = colour(members[0])
            continue
        rgb = np.array(colors.to_rgb(colour(members[0])))
        for i, label in enumerate(sorted(members, key=_arm_order)):
            mix = -0.65 + 0.95 * i / (len(members) - 1)  # < 0: towards white, > 0: towards black
            shaded = rgb + (1.0 - rgb) * -mix if mix < 0 else rgb * (1.0 - mix)
            out[label] = colors.to_hex(np.clip(shaded, 0.0, 1.0))
    return out


def marker(label: str) -> str:
    return LEARNED_MARKER if is_learned(label) else HAND_MARKER


def apply() -> None:
    plt.rcParams.update(RC)


@dataclass
class PlotData:
    """The values a figure plots, one row per point: panel, series, kind (line, bar or table),
    x, y and optional interval ends; written beside the figure as CSV."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, panel: str, series: str, kind: str, x: Any, y: Any,
            lo: Any = None, hi: Any = None, **extra: Any) -> None:
        xs, ys = np.atleast_1d(x), np.atleast_1d(np.asarray(y, dtype=float))
        los = np.full(len(ys), np.nan) if lo is None else np.atleast_1d(np.asarray(lo, float))
        his = np.full(len(ys), np.nan) if hi is None else np.atleast_1d(np.asarray(hi, float))
        for i in range(len(ys)):
            per_point = {k: v[i] if isinstance(v, (list, tuple, np.ndarray)) else v
                         for k, v in extra.items()}
            self.rows.append({"panel": panel, "series": series, "kind": kind, "x": xs[i],
                              "y": ys[i], "lo": los[i], "hi": his[i], **per_point})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=None if self.rows else
                            ["panel", "series", "kind", "x", "y", "lo", "hi"])


def tag(artist: Any, panel: str, series: str) -> Any:
    """Mark a line as the data of panel/series (bars are tagged by ``bars``)."""
    artist.set_gid(f"{panel}|{series}")
    return artist


def read_back(fig: plt.Figure) -> pd.DataFrame:
    """The tagged data of a figure, read from its artists: lines give their (x, y) points,
    bars their lengths (height, or width for horizontal bars) in drawing order."""
    rows = []
    for ax in fig.axes:
        for line in ax.lines:
            gid = line.get_gid()
            if gid:
                panel, series = gid.split("|", 1)
                for x, y in np.asarray(line.get_xydata()):
                    rows.append({"panel": panel, "series": series, "kind": "line", "x": x,
                                 "y": y})
        for patch in ax.patches:
            gid = patch.get_gid()
            if gid:
                panel, series, orientation = gid.rsplit("|", 2)
                length = patch.get_width() if orientation == "h" else patch.get_height()
                rows.append({"panel": panel, "series": series, "kind": "bar", "x": np.nan,
                             "y": length})
    return pd.DataFrame(rows, columns=["panel", "series", "kind", "x", "y"])


def bars(ax: plt.Axes, labels: list[str], values: np.ndarray, panel: str, series: str,
         data: PlotData, horizontal: bool = True, **kwargs: Any) -> None:
    """Bars coloured per optimizer, tagged and recorded."""
    values = np.asarray(values, dtype=float)
    colours = [colour(label) for label in labels]
    draw = ax.barh if horizontal else ax.bar
    container = draw(labels, values, color=colours, **kwargs)
    for patch in container.patches:
        patch.set_gid(f"{panel}|{series}|{'h' if horizontal else 'v'}")
    data.add(panel, series, "bar", labels, values)


def footnote(fig: plt.Figure, hardware: str, scale: str, notes: list[str] = ()) -> None:
    """Hardware and scale (and any notes, e.g. a missing table) under the figure."""
    text = f"Measured on {hardware}. Scale: {scale}."
    if notes:
        text += "\n" + "\n".join(notes)
    fig.text(0.01, 0.005, text, fontsize=7, va="bottom", ha="left", wrap=True, color="#333333")


def hardware(*tables: pd.DataFrame | None) -> str:
    """The hardware the rows of ``tables`` were measured on, in words."""
    kinds, cpus, cores = set(), set(), set()
    for table in tables:
        if table is None or table.empty:
            continue
        for column, into in (("device_kind", kinds), ("cpu_model", cpus), ("cpu_count", cores)):
            if column in table:
                into.update(table[column].dropna().unique().tolist())
    if not kinds and not cpus:
        return "unknown hardware"
    parts = [", ".join(sorted(map(str, kinds))) or "device unknown"]
    if cpus:
        count = ", ".join(str(int(c)) for c in sorted(cores)) or "?"
        parts.append(f"{', '.join(sorted(map(str, cpus)))} ({count} cores)")
    return "; ".join(parts)


def save(fig: plt.Figure, data: PlotData | pd.DataFrame, folder: Path, name: str) -> list[Path]:
    """Write the figure as PNG and PDF and its plotted data as CSV; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf", folder / f"{name}.csv"]
    fig.savefig(paths[0], dpi=130)
    fig.savefig(paths[1])
    frame = data.frame() if isinstance(data, PlotData) else data
    frame.to_csv(paths[2], index=False)
    return paths
