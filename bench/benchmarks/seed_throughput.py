"""Benchmark: wall time of a sweep of 8 seeds, one after another vs vmapped, cold vs warm
compilation cache (``make bench``).

Runs ``python -m bench.sweep sweep=seed_throughput`` (8 seeds x 2,000 steps of Adam on the
standard task, throughput only) as a user would: sequential or vmapped seeds
(``sweep.vmap_seeds``), both with the default worker process per work item
(``sweep.isolate=true``: a process per seed, or one for the vmapped group) and both in the
sweep's own process (``isolate=false``: the fastest sequential path, no process start per
seed); each first with an empty persistent compilation cache (cold) and then again with the
cache it filled (warm, ``sweep.force=true``). The wall time is the whole command's, from
process start to tables written. Writes ``results/bench/seed_throughput.parquet`` and prints
the ratios.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.records.files import atomic_write, read_parquet

# name: (seeds vmapped, worker process per work item)
MODES = {
    "sequential_isolated": (False, True), "vmapped_isolated": (True, True),
    "sequential_shared": (False, False), "vmapped_shared": (True, False),
}


def sweep_seconds(results: Path, mode: str, cache: Path, force: bool,
                  extra: list[str]) -> tuple[float, pd.DataFrame]:
    """Wall seconds of one sweep command, and its runs table."""
    command = [sys.executable, "-m", "bench.sweep", "sweep=seed_throughput",
               f"results_dir={results}", f"sweep.name={mode}", f"sweep.compile_cache={cache}",
               f"sweep.vmap_seeds={str(MODES[mode][0]).lower()}",
               f"sweep.isolate={str(MODES[mode][1]).lower()}", f"sweep.force={str(force).lower()}",
               *extra]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stdout[-2000:]}"
                           f"{proc.stderr[-2000:]}")
    runs = read_parquet(results / mode / "runs.parquet")
    if not (runs.status == "ok").all():
        raise RuntimeError(f"{mode}: not every run ok: {runs.status.tolist()}")
    return seconds, runs


def measure(repeats: int, extra: list[str]) -> pd.DataFrame:
    """``repeats`` rounds of the four sweeps, each round in fresh folders."""
    rows = []
    for repeat in range(repeats):
        for mode in MODES:
            with tempfile.TemporaryDirectory(prefix="seed-throughput-") as tmp:
                results, cache = Path(tmp) / "results", Path(tmp) / "jax-cache"
                for state in ("cold", "warm"):
                    seconds, runs = sweep_seconds(results, mode, cache, state == "warm", extra)
                    rows.append({
                        "mode": mode, "cache": state, "repeat": repeat, "wall_s": seconds,
                        "runs": len(runs), "steps": int(runs.steps.iloc[0]),
                        # vmapped rows carry the group's times, sequential rows their own
                        **{f"{name}_s": float(runs[column].iloc[0] if MODES[mode][0]
                                              else runs[column].sum())
                           for name, column in (("compile", "compile_time_s"),
                                                ("train", "train_time_s"), ("run", "run_s"))},
                        "process_start_s": float(runs.process_start_s.iloc[0] if MODES[mode][0]
                                                 else runs.process_start_s.sum()),
                        "final_eval_loss_mean": float(runs.final_eval_loss.mean()),
                        "cpu_model": runs.cpu_model.iloc[0],
                        "device_kind": runs.device_kind.iloc[0],
                    })
                    row = rows[-1]
                    print(f"{mode:>20} {state}: {seconds:6.1f} s (process starts "
                          f"{row['process_start_s']:.1f} s, runs {row['run_s']:.1f} s: compile "
                          f"{row['compile_s']:.1f} s, train {row['train_s']:.1f} s)", flush=True)
                    shutil.rmtree(results / mode / "records", ignore_errors=True)
    return pd.DataFrame(rows)


def ratios(table: pd.DataFrame) -> dict[str, float]:
    """Speed-ups from the fastest repeat of each sweep."""
    best = table.groupby(["mode", "cache"]).wall_s.min()
    out = {}
    for way in ("isolated", "shared"):
        for cache in ("cold", "warm"):
            out[f"sequential/vmapped ({way}, {cache} cache)"] = (
                best[f"sequential_{way}", cache] / best[f"vmapped_{way}", cache])
    for mode in MODES:
        out[f"cold/warm cache ({mode})"] = best[mode, "cold"] / best[mode, "warm"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2,
                        help="rounds of the four sweeps; the fastest of each is compared")
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every sweep")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats={args.repeats}: must be at least 1")
    table = measure(args.repeats, args.overrides)
    path = args.out / "seed_throughput.parquet"
    atomic_write(path, lambda p: table.to_parquet(p, index=False))
    print(f"\nwall time of the sweep (s), fastest of {args.repeats}:")
    print(table.groupby(["mode", "cache"]).wall_s.min().unstack().round(1).to_string())
    for name, value in ratios(table).items():
        print(f"{name:>46}: {value:.2f}x")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
