"""Where each figure's tables come from: the latest results on disk, else the small reference
tables shipped under results/reference/paper/, else nothing; and the note a figure carries
saying which table it lacks or replaced and the command that makes it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.analysis.summary import newest_code_tables
from bench.records.files import read_parquet

RESULTS = Path("results")
REFERENCE = Path("results/reference/paper")
ORIGINS = ("latest", "reference")


@dataclass(frozen=True)
class Source:
    """A table a figure reads: its file under results/, its reference copy and its maker."""

    name: str
    runs: str                  # path under results/
    curves: str | None         # path under results/, or None for tables without curves
    command: str               # the command that writes it
    what: str                  # what it holds, in words

    @property
    def reference_runs(self) -> str:
        return f"{self.name}_runs.parquet" if self.curves else f"{self.name}.parquet"

    @property
    def reference_curves(self) -> str | None:
        return f"{self.name}_curves.parquet" if self.curves else None


SOURCES = {s.name: s for s in (
    Source("default", "default/runs.parquet", "default/curves.parquet",
           "make sweep SWEEP=default", "hand-designed optimizers trained on the standard task"),
    Source("lopt_vs_adam", "lopt_vs_adam/runs.parquet", "lopt_vs_adam/curves.parquet",
           "make sweep SWEEP=lopt_vs_adam",
           "meta-trained learned optimizers against Adam at several learning rates"),
    Source("overhead", "overhead/runs.parquet", None, "make sweep SWEEP=overhead",
           "step-time overhead against batch size and width (timing only)"),
    Source("update_cost", "bench/update_cost.parquet", None, "make bench",
           "update time of every optimizer at 1M and 10M parameters"),
    Source("lopt_design", "lopt_design/runs.parquet", None, "make sweep SWEEP=lopt_design",
           "small_fc_lopt design variants, timing only"),
    Source("generalisation", "generalisation/runs.parquet", "generalisation/curves.parquet",
           "make sweep SWEEP=generalisation",
           "meta-trained learned optimizers against tuned Adam on held-out tasks"),
    Source("lopt_ablation", "lopt_ablation/runs.parquet", None,
           "make sweep SWEEP=lopt_ablation",
           "small_fc_lopt with feature groups removed, trained on the standard task"),
)}


@dataclass
class Table:
    """A loaded source: its runs (and curves), where they came from, and a note if needed."""

    source: Source
    runs: pd.DataFrame | None
    curves: pd.DataFrame | None
    origin: str  # the file read, or "missing"
    earlier_code: int = 0  # runs of earlier code the file also held, left out

    @property
    def missing(self) -> bool:
        return self.runs is None

    @property
    def from_reference(self) -> bool:
        return not self.missing and "reference" in self.origin

    def note(self) -> str | None:
        """What a figure says about this table: nothing for latest results of one code, else
        which table is missing or replaced and the command that makes it, or how many runs of
        earlier code were left out."""
        wanted = f"results/{self.source.runs}"
        if self.missing:
            return (f"Missing: {wanted} ({self.source.what}); `{self.source.command}` "
                    "makes it.")
        if self.from_reference:
            return (f"{wanted} not found: drawn from the shipped reference table {self.origin}; "
                    f"`{self.source.command}` makes the full one.")
        if self.earlier_code:
            return (f"{self.origin}: {self.earlier_code} runs of earlier code left out; "
                    f"`{self.source.command}` with sweep.prune=true sets them aside.")
        return None


def load(name: str, origin: str = "latest", results: Path = RESULTS,
         reference: Path = REFERENCE) -> Table:
    """Table ``name``: from results/ when ``origin`` is latest and it exists there, else the
    reference copy, else missing; only the runs of the newest run's code (a results folder
    also keeps runs of earlier code, which no figure may mix in)."""
    if name not in SOURCES:
        raise KeyError(f"table {name!r}: expected one of {sorted(SOURCES)}")
    if origin not in ORIGINS:
        raise ValueError(f"origin={origin!r}: expected one of {ORIGINS}")
    source = SOURCES[name]
    candidates = [(results / source.runs, source.curves and results / source.curves)]
    candidates = candidates if origin == "latest" else []
    candidates.append((reference / source.reference_runs,
                       source.reference_curves and reference / source.reference_curves))
    for runs_path, curves_path in candidates:
        if runs_path.exists():
            curves = read_parquet(curves_path) if curves_path and Path(
                curves_path).exists() else None
            runs, curves, earlier = newest_code_tables(read_parquet(runs_path), curves)
            return Table(source, runs, curves, str(runs_path), earlier)
    return Table(source, None, None, "missing")
