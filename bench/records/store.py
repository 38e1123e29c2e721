"""Run records on disk, and the tidy tables merged from them.

Each run writes two files under ``<sweep folder>/records/``: ``<run_id>.curves.parquet`` first,
then ``<run_id>.json`` (the row). Both are written to a temporary name and renamed into place,
so a killed sweep never leaves a partial record, and the row's presence marks a finished run.
The collector merges every row into ``runs.parquet`` and every curve into ``curves.parquet``,
deduplicating by run id and skipping (with a warning) any file it cannot read.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.records.files import atomic_write, read_parquet
from bench.records.schema import CURVE_COLUMNS, RUN_COLUMNS, STATUSES, json_safe, record_problem


@dataclass(frozen=True)
class RecordStore:
    """The records folder of one sweep."""

    folder: Path

    @property
    def records(self) -> Path:
        return self.folder / "records"

    def row_path(self, rid: str) -> Path:
        return self.records / f"{rid}.json"

    def curves_path(self, rid: str) -> Path:
        return self.records / f"{rid}.curves.parquet"

    def write(self, row: Mapping[str, Any], curves: pd.DataFrame | None) -> None:
        """Store one finished run: curves first, then the row that marks it complete."""
        rid = row["run_id"]
        if row.get("status") not in STATUSES:
            raise ValueError(f"status={row.get('status')!r}: expected one of {STATUSES}")
        if curves is not None and len(curves):
            table = curves.assign(run_id=rid)[list(CURVE_COLUMNS)]
            atomic_write(self.curves_path(rid), lambda p: table.to_parquet(p, index=False))
        else:
            self.curves_path(rid).unlink(missing_ok=True)
        text = json.dumps({k: json_safe(v) for k, v in row.items()}, indent=1, sort_keys=True)
        atomic_write(self.row_path(rid), lambda p: p.write_text(text))

    def run_ids(self) -> set[str]:
        """Ids of every run with a row on disk."""
        return {p.stem for p in self.records.glob("*.json")}

    def set_aside(self, rid: str, into: str = "superseded") -> None:
        """Move a run's files into ``records/<into>/``: out of the tables, not deleted."""
        aside = self.records / into
        aside.mkdir(parents=True, exist_ok=True)
        for path in (self.curves_path(rid), self.row_path(rid)):
            if path.exists():
                os.replace(path, aside / path.name)

    def curves_problem(self, row: Mapping[str, Any]) -> str | None:
        """Why a valid row's curves file is not usable, or None: a run that trained has one."""
        if not row.get("steps"):
            return None
        path = self.curves_path(row["run_id"])
        try:
            rows = pq.read_metadata(path).num_rows
        except FileNotFoundError:
            return f"its curves file {path} is missing"
        except Exception as exc:  # pyarrow raises several types on a damaged file
            return f"its curves file {path} is unreadable ({exc})"
        return None if rows else f"its curves file {path} is empty"

    def set_aside_invalid(self) -> dict[str, str]:
        """Move every invalid record (and every record whose curves are missing or unreadable)
        into ``records/invalid/``; returns {run id: what was wrong} for the user."""
        found = {}
        for path in sorted(self.records.glob("*.json")):
            row, problem = self._read(path)
            problem = problem or self.curves_problem(row)
            if problem:
                found[path.stem] = f"{path}: {problem}"
                self.set_aside(path.stem, into="invalid")
        return found

    def read_row(self, rid: str) -> dict[str, Any] | None:
        """The stored row of a run, or None if absent, unreadable or not a valid record."""
        return self._read(self.row_path(rid))[0]

    def _read(self, path: Path) -> tuple[dict[str, Any] | None, str | None]:
        """(row, None) for a valid record, (None, why not) otherwise."""
        try:
            row = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            return None, f"unreadable: {exc}"
        problem = record_problem(row, path.stem)
        return (None, problem) if problem else (row, None)

    def collect(self, warn: Callable[[str], None] | None = None
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Merge every readable record into (runs, curves); unreadable files are reported."""
        warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
        rows = []
        for path in sorted(self.records.glob("*.json")):
            row, problem = self._read(path)
            if problem:
                warn(f"skipping corrupt record {path}: {problem}")
                continue
            rows.append(row)
        runs = pd.DataFrame(rows)
        for column in RUN_COLUMNS:
            if column not in runs.columns:
                runs[column] = None
        if len(runs):
            runs = runs.sort_values("finished_at", kind="stable") if "finished_at" in runs else runs
            runs = runs.drop_duplicates("run_id", keep="last")
            runs = runs.sort_values(["task", "optimizer", "seed"], kind="stable")
        front = list(RUN_COLUMNS)
        runs = runs[front + sorted(c for c in runs.columns if c not in front)]
        runs = _arrow_ready(runs, warn)
        curves = []
        for rid in runs["run_id"]:
            path = self.curves_path(rid)
            if not path.exists():
                continue
            try:
                curves.append(read_parquet(path))
            except Exception as exc:  # pyarrow raises several types on a damaged file
                warn(f"skipping corrupt curves {path}: {exc}")
        table = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(
            columns=list(CURVE_COLUMNS))
        return runs.reset_index(drop=True), table

    def write_tables(self, runs: pd.DataFrame, curves: pd.DataFrame) -> tuple[Path, Path]:
        """Write runs.parquet and curves.parquet atomically into the sweep folder."""
        runs_path, curves_path = self.folder / "runs.parquet", self.folder / "curves.parquet"
        atomic_write(runs_path, lambda p: runs.to_parquet(p, index=False))
        atomic_write(curves_path, lambda p: curves.to_parquet(p, index=False))
        return runs_path, curves_path


def _arrow_ready(runs: pd.DataFrame, warn: Callable[[str], None]) -> pd.DataFrame:
    """``runs`` with every column Parquet can hold: settings of one name but different types in
    different runs (a number here, a string there) are kept as text, with a warning."""
    for column in [c for c in runs.columns if pd.api.types.is_object_dtype(runs[c])]:
        try:
            pa.array(runs[column], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            warn(f"column {column} mixes value types across runs; kept as JSON text")
            runs[column] = [None if v is None else json.dumps(v, default=str)
                            for v in runs[column]]
    return runs
