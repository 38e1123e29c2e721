"""Resume decisions: which planned runs a sweep runs, which records it skips or sets aside,
and why (printed for the user)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from bench.records.schema import FINISHED
from bench.records.store import RecordStore
from bench.sweep.settings import SweepSettings
from bench.train.spec import RunSpec


class Decision:
    """Which planned runs to run, and why the others are skipped (printed for the user)."""

    def __init__(self, runs: list[RunSpec], store: RecordStore, settings: SweepSettings,
                 invalid: set[str] = frozenset()) -> None:
        skip = () if settings.force else FINISHED if settings.retry_failed else (
            *FINISHED, "error", "oom")
        recorded = store.run_ids()
        self.todo: list[RunSpec] = []
        self.skipped: dict[str, int] = {}
        self.reasons: dict[str, int] = {}
        stale = sorted(recorded - {r.run_id for r in runs})
        stale_configs = {rid: (row or {}).get("config_id") for rid, row in
                         zip(stale, map(store.read_row, stale))}
        planned_configs = {r.config_id for r in runs}
        # Records of planned configs under other code: replaced by this sweep's runs.
        self.superseded = [rid for rid in stale if stale_configs[rid] in planned_configs]
        self.stale = [rid for rid in stale if rid not in self.superseded]
        other_code = set(stale_configs.values())
        for planned in runs:
            row = store.read_row(planned.run_id) if planned.run_id in recorded else None
            status = None if row is None else row.get("status")
            if status in skip:
                kind = "finished" if status in FINISHED else "failed"
                self.skipped[kind] = self.skipped.get(kind, 0) + 1
                continue
            self.todo.append(planned)
            reason = ("forced (sweep.force=true)" if settings.force and status in FINISHED else
                      "failed before, retried" if status in ("error", "oom") else
                      f"unreadable record {store.row_path(planned.run_id)}"
                      if planned.run_id in recorded else
                      "invalid record set aside" if planned.run_id in invalid else
                      "recorded under another code version" if planned.config_id in other_code
                      else "new")
            self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def describe(self, name: str, planned: int, folder: Path) -> str:
        skipped = sum(self.skipped.values())
        why = []
        if self.skipped.get("finished"):
            why.append(f"{self.skipped['finished']} finished (ok or diverged; sweep.force=true "
                       "reruns them)")
        if self.skipped.get("failed"):
            why.append(f"{self.skipped['failed']} failed (error or oom; "
                       "sweep.retry_failed=true retries them)")
        todo = ", ".join(f"{n} {r}" for r, n in self.reasons.items())
        return (f"sweep '{name}': {planned} runs planned, {skipped} already recorded and "
                f"skipped{' (' + '; '.join(why) + ')' if why else ''}, {len(self.todo)} to run"
                f"{' (' + todo + ')' if todo else ''}; results in {folder}/")


def tables_current(store: RecordStore, figures: bool) -> bool:
    """Whether the tables (and the figures) say what the records say: both tables readable,
    runs.parquet holding exactly the recorded runs and newer than every record."""
    runs, curves = store.folder / "runs.parquet", store.folder / "curves.parquet"
    if figures and not (store.folder / "figures").is_dir():
        return False
    try:
        tabled = set(pq.read_table(runs, columns=["run_id"]).column("run_id").to_pylist())
        pq.read_metadata(curves)
    except Exception:  # missing or unreadable: derived data, rebuilt from the records
        return False
    records = list(store.records.glob("*.json"))
    newest = max((p.stat().st_mtime for p in records), default=0.0)
    return tabled == {p.stem for p in records} and runs.stat().st_mtime >= newest


def set_aside_replaced(decision: Decision, store: RecordStore, settings: SweepSettings,
               folder: Path) -> bool:
    """Set aside records of planned configs made by other code (always) and of runs the sweep
    no longer plans (with ``sweep.prune``); returns whether any of the latter were."""
    for rid in decision.superseded:
        store.set_aside(rid)
    if decision.superseded:
        print(f"set aside {len(decision.superseded)} records of these runs made by other code "
              f"(moved to {store.records / 'superseded'}): this code's runs replace them")
    stale = decision.stale if settings.num_shards == 1 else []
    if stale and settings.prune:
        for rid in stale:
            store.set_aside(rid)
        print(f"set aside {len(stale)} records of runs this sweep no longer plans "
              f"(moved to {store.records / 'superseded'})")
        return True
    if stale:
        print(f"note: {folder} holds {len(stale)} records of runs this sweep does not plan "
              "(other settings, other code or a narrowed sweep); they stay in the tables. "
              "sweep.prune=true sets them aside.")
    return False
