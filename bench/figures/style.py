"""One visual style for every figure: a fixed colour per optimizer, learned optimizers marked
apart from hand-designed ones, readable fonts, and a footnote with hardware and scale.

Every plotted series is tagged (``tag``) with its panel and series name and recorded in a
``PlotData`` table, which is written beside the figure as CSV; tests read the tagged artists
back and compare them with that table and with the source tables.
"""

from __future__ import annotations

import numbers
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


def is_learned(name: str) -> bool:
    """Whether the optimizer of config name ``name`` is a learned one."""
    return name in LEARNED


def colour(name: str) -> str:
    """The colour of the optimizer of config name ``name``; unknown names get a stable spare."""
    if name in COLOURS:
        return COLOURS[name]
    return _SPARE[sum(map(ord, str(name))) % len(_SPARE)]


def marker(name: str) -> str:
    """The marker of the optimizer of config name ``name``: learned ones are triangles."""
    return LEARNED_MARKER if is_learned(name) else HAND_MARKER


def names(table: pd.DataFrame) -> pd.Series:
    """Each row's optimizer config name (``optimizer_name``); rows without one are named by
    their label."""
    if "optimizer_name" not in table:
        return table["optimizer"].astype(str)
    return table.optimizer_name.where(table.optimizer_name.notna(), table.optimizer).astype(str)


def arms(table: pd.DataFrame) -> pd.Series:
    """Each row's arm: the settings its preset varies (a dict), or None."""
    if "arm" not in table:
        return pd.Series([None] * len(table), index=table.index, dtype=object)
    return table["arm"].map(lambda arm: arm if isinstance(arm, dict) else None)


def with_facts(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``table`` (keyed by the ``optimizer`` label) with each label's ``optimizer_name`` and
    ``arm`` from ``runs``, so that a summary can be coloured like its runs."""
    first = runs.drop_duplicates("optimizer")
    name = dict(zip(first.optimizer, names(first)))
    arm = dict(zip(first.optimizer, arms(first)))
    return table.assign(optimizer_name=[name.get(o, str(o)) for o in table.optimizer],
                        arm=[arm.get(o) for o in table.optimizer])


def _order(value: Any) -> tuple:
    """Sort key of one setting: numbers by value, then text, then sequences, then missing."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple, np.ndarray)):
        return 2, tuple(_order(v) for v in value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return 3, ""
    if isinstance(value, numbers.Number):
        return 0, float(value)
    return 1, str(value)


def arm_key(arm: dict | None) -> tuple:
    """Sort key of an arm: the tuple of its setting values, numbers compared numerically."""
    return tuple(_order(v) for v in arm.values()) if isinstance(arm, dict) else ()


def arm_colours(table: pd.DataFrame) -> dict[str, str]:
    """A colour per ``optimizer`` label of ``table``: the optimizer's own colour, and where one
    optimizer has several arms (learning rates, say), its colour shaded from light (smallest
    arm values) to dark (largest), so that arms are told apart and the optimizer recognised."""
    first = table.drop_duplicates("optimizer")
    groups: dict[str, list[tuple[str, Any]]] = {}
    for label, name, arm in zip(first.optimizer.astype(str), names(first), arms(first)):
        groups.setdefault(name, []).append((label, arm))
    out = {}
    for name, members in groups.items():
        if len(members) == 1:
            out[members[0][0]] = colour(name)
            continue
        rgb = np.array(colors.to_rgb(colour(name)))
        ordered = sorted(members, key=lambda m: (arm_key(m[1]), m[0]))
        for i, (label, _) in enumerate(ordered):
            mix = -0.65 + 0.95 * i / (len(members) - 1)  # < 0: towards white, > 0: towards black
            shaded = rgb + (1.0 - rgb) * -mix if mix < 0 else rgb * (1.0 - mix)
            out[label] = colors.to_hex(np.clip(shaded, 0.0, 1.0))
    return out


def numeric(table: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """``table`` with ``columns`` as floats, NaN where empty (an all-empty column comes back
    from Parquet as None) or absent."""
    return table.assign(**{c: pd.to_numeric(table[c], errors="coerce") if c in table
                           else np.nan for c in columns})


def apply() -> None:
    plt.rcParams.update(RC)


def empty(ax: plt.Axes, text: str) -> None:
    """A panel with nothing to draw: says why, without axis ticks."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


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
         data: PlotData, horizontal: bool = True, colours: Any = None, **kwargs: Any) -> None:
    """Bars, tagged and recorded; coloured by ``colours`` (one colour or one per bar), by
    default the colour of the optimizer each label names."""
    values = np.asarray(values, dtype=float)
    colours = [colour(label) for label in labels] if colours is None else colours
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


UNKNOWN_HARDWARE = "unknown hardware"


def one_machine(table: pd.DataFrame | None, notes: list[str]) -> pd.DataFrame | None:
    """The rows of ``table`` measured on its most common machine (a figure draws one machine);
    a note in ``notes`` names the rows left out and where they were measured."""
    if table is None or table.empty:
        return table
    facts = [c for c in ("device_kind", "cpu_model", "cpu_count") if c in table]
    if not facts:
        return table
    machine = table[facts].astype(str).agg(" / ".join, axis=1)
    if machine.nunique() <= 1:
        return table
    kept = machine.value_counts().index[0]
    others = table[machine != kept]
    notes.append(f"{len(others)} row(s) measured on another machine left out "
                 f"({hardware(others)}).")
    return table[machine == kept]


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
        return UNKNOWN_HARDWARE
    parts = [", ".join(sorted(map(str, kinds))) or "device unknown"]
    if cpus:
        count = ", ".join(str(int(c)) for c in sorted(cores)) or "?"
        parts.append(f"{', '.join(sorted(map(str, cpus)))} ({count} cores)")
    return "; ".join(parts)


def save_figure(fig: plt.Figure, folder: Path, name: str,
                data: PlotData | pd.DataFrame | None = None) -> list[Path]:
    """Write the figure as PNG and PDF (and its plotted values as CSV, when given), then close
    it; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=130)
    fig.savefig(paths[1])
    if data is not None:
        paths.append(folder / f"{name}.csv")
        frame = data.frame() if isinstance(data, PlotData) else data
        frame.to_csv(paths[2], index=False)
    plt.close(fig)
    return paths
