"""Run records on disk, and the tidy tables merged from them.

Each run writes two files under ``<sweep folder>/records/``: ``<run_id>.curves.parquet`` first,
then ``<run_id>.json`` (the row). Both are written to a temporary name and renamed into place,
so a killed sweep never leaves a partial record, and the row's presence marks a finished run.
The collector merges every row into ``runs.parquet`` and every curve into ``curves.parquet``,
deduplicating by run id and skipping (with a warning) any file it cannot read.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

STATUSES = ("ok", "diverged", "oom", "error")
# Statuses that are final results: a rerun skips them unless forced.
FINISHED = ("ok", "diverged")

RUN_COLUMNS = (
    "run_id", "sweep", "optimizer", "task", "seed", "batch_size", "num_params", "steps",
    "status", "error", "final_train_loss", "final_eval_loss", "best_eval_loss",
    "step_time_median_s", "step_time_p10_s", "step_time_p90_s", "grad_time_median_s",
    "update_time_median_s", "compile_time_s", "opt_state_bytes", "opt_state_floats_per_param",
    "update_flops", "grad_flops", "peak_device_bytes", "peak_rss_bytes", "device_kind",
    "jax_version", "optax_version", "git_commit",
)
CURVE_COLUMNS = ("run_id", "step", "split", "loss", "wall_time_s")


def run_id(identity: Mapping[str, Any]) -> str:
    """A short stable hash of everything that defines a run (its resolved config)."""
    canonical = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def atomic_write(path: Path, write) -> None:
    """Write through ``write(tmp_path)`` to a temporary file, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    return value


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
        text = json.dumps({k: _json_safe(v) for k, v in row.items()}, indent=1, sort_keys=True)
        atomic_write(self.row_path(rid), lambda p: p.write_text(text))

    def run_ids(self) -> set[str]:
        """Ids of every run with a row on disk."""
        return {p.stem for p in self.records.glob("*.json")}

    def set_aside(self, rid: str) -> None:
        """Move a run's files into ``records/superseded/``: out of the tables, not deleted."""
        aside = self.records / "superseded"
        aside.mkdir(parents=True, exist_ok=True)
        for path in (self.curves_path(rid), self.row_path(rid)):
            if path.exists():
                os.replace(path, aside / path.name)

    def read_row(self, rid: str) -> dict[str, Any] | None:
        """The stored row of a run, or None if absent or unreadable."""
        try:
            return json.loads(self.row_path(rid).read_text())
        except (OSError, ValueError):
            return None

    def collect(self, warn=None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Merge every readable record into (runs, curves); unreadable files are reported."""
        warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
        rows = []
        for path in sorted(self.records.glob("*.json")):
            try:
                row = json.loads(path.read_text())
                if not isinstance(row, dict) or row.get("status") not in STATUSES:
                    raise ValueError("not a run record")
                if path.stem != row.get("run_id"):
                    raise ValueError(f"names run_id {row.get('run_id')!r}")
            except (OSError, ValueError) as exc:
                warn(f"skipping corrupt record {path}: {exc}")
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
        front = [c for c in RUN_COLUMNS]
        runs = runs[front + sorted(c for c in runs.columns if c not in front)]
        curves = []
        for rid in runs["run_id"]:
            path = self.curves_path(rid)
            if not path.exists():
                continue
            try:
                curves.append(pd.read_parquet(path))
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
