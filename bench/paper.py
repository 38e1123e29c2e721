"""``make paper SCALE=cpu|gpu``: run exactly the sweeps the paper figures need, skipping what is
already recorded, then draw the figures (``bench.figures.paper``).

The sweeps of a scale are listed in conf/paper/<scale>.yaml: presets of conf/sweep/ with
optional overrides, and the update-cost benchmark's arguments. A preset that does not exist
yet is skipped with a note (its figures then name the missing table); the benchmark is skipped
when its table exists. ``--dry-run`` prints the commands without running them.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from omegaconf import OmegaConf

CONF = Path("conf")
RESULTS = Path("results")


class Step(NamedTuple):
    """One command of the plan, or a reason it is skipped."""

    name: str
    command: list[str] | None
    skipped: str | None = None


def plan(scale: str, conf: Path = CONF, results: Path = RESULTS,
         python: str = sys.executable) -> list[Step]:
    """The commands ``make paper SCALE=scale`` runs, in order."""
    path = conf / "paper" / f"{scale}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (conf / "paper").glob("*.yaml"))
        raise ValueError(f"SCALE={scale!r}: no {path}; expected one of {known}")
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    steps = []
    for entry in cfg.get("sweeps") or []:
        preset = entry["preset"]
        if not (conf / "sweep" / f"{preset}.yaml").exists():
            steps.append(Step(preset, None, f"conf/sweep/{preset}.yaml does not exist yet"))
            continue
        overrides = [str(o) for o in entry.get("overrides") or []]
        # Each sweep draws its own figures too (seconds), so that its folder is complete.
        steps.append(Step(preset, [python, "-m", "bench.sweep", f"sweep={preset}", *overrides]))
    bench = cfg.get("bench")
    if bench is not None:
        table = results / "bench" / "update_cost.parquet"
        command = [python, "-m", "bench.benchmarks.update_cost", *map(str, bench.get("args") or [])]
        steps.append(Step("bench", command, f"{table} exists (delete it to rerun)"
                          if table.exists() else None))
    steps.append(Step("figures", [python, "-m", "bench.figures.paper"]))
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="cpu")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    try:
        steps = plan(args.scale)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = []
    for step in steps:
        if step.skipped:
            print(f"[paper] skip {step.name}: {step.skipped}", flush=True)
            continue
        print(f"[paper] {step.name}: {shlex.join(step.command)}", flush=True)
        if not args.dry_run and subprocess.run(step.command).returncode != 0:
            failed.append(step.name)
    if failed:
        print(f"[paper] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
