"""Benchmark: wall time of a sweep of 8 seeds, one after another vs vmapped, cold vs warm
compilation cache (``make bench``).

Runs ``python -m bench.sweep sweep=seed_throughput`` (8 seeds x 2,000 steps of Adam on the
standard task, throughput only) as a user would, four ways: sequential or vmapped seeds
(``sweep.vmap_seeds``), each first with an empty persistent compilation cache (cold) and then
again with the cache it filled (warm, ``sweep.force=true``). Both ways run in the sweep's own
process (``sweep.isolate=false``), the faster sequential path, so the comparison does not
count a process start per sequential run. The wall time is the whole command's, from process
start to tables written. Writes ``results/bench/seed_throughput.parquet`` and prints the ratios.
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

from bench.records import atomic_write

MODES = {"sequential": [], "vmapped": ["sweep.vmap_seeds=true"]}


def sweep_seconds(results: Path, mode: str, cache: Path, force: bool,
                  extra: list[str]) -> tuple[float, pd.DataFrame]:
    """Wall seconds of one sweep command, and its runs table."""
    command = [sys.executable, "-m", "bench.sweep", "sweep=seed_throughput",
               f"results_dir={results}", f"sweep.name={mode}", f"sweep.compile_cache={cache}",
               "sweep.isolate=false", f"sweep.force={str(force).lower()}", *MODES[mode],
               *extra]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stdout[-2000:]}"
                           f"{proc.stderr[-2000:]}")
    runs = pd.read_parquet(results / mode / "runs.parquet")
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
                        "compile_s": float(runs.compile_time_s.sum() if mode == "sequential"
                                           else runs.compile_time_s.iloc[0]),
                        "train_s": float(runs.train_time_s.sum() if mode == "sequential"
                                         else runs.train_time_s.iloc[0]),
                        "final_eval_loss_mean": float(runs.final_eval_loss.mean()),
                        "cpu_model": runs.cpu_model.iloc[0],
                        "device_kind": runs.device_kind.iloc[0],
                    })
                    print(f"{mode:>10} {state}: {seconds:6.1f} s (compile "
                          f"{rows[-1]['compile_s']:.1f} s, train {rows[-1]['train_s']:.1f} s)",
                          flush=True)
                    shutil.rmtree(results / mode / "records", ignore_errors=True)
    return pd.DataFrame(rows)


def ratios(table: pd.DataFrame) -> dict[str, float]:
    """Speed-ups from the fastest repeat of each of the four sweeps."""
    best = table.groupby(["mode", "cache"]).wall_s.min()
    return {
        "sequential/vmapped (cold cache)": best["sequential", "cold"] / best["vmapped", "cold"],
        "sequential/vmapped (warm cache)": best["sequential", "warm"] / best["vmapped", "warm"],
        "cold/warm (sequential)": best["sequential", "cold"] / best["sequential", "warm"],
        "cold/warm (vmapped)": best["vmapped", "cold"] / best["vmapped", "warm"],
    }


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
        print(f"{name:>34}: {value:.2f}x")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
