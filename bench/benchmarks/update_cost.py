"""Benchmark: what one optimizer update costs as the parameter count grows (``make bench``).

For each optimizer config and size, the harness's own measurement path times the update on a
wide linear model of that many parameters. Beside it, in the same process: a device copy of
the same bytes (the bandwidth ceiling an elementwise update can hope for) and, for Adam, a
minimal hand-written timing loop (to check the harness adds nothing to what it reports).

Each row has the optimizer's floor: the least time its update can take here, the larger of
its bytes floor (analytic bytes / the copy bandwidth) and its compute floor (analytic matrix
product FLOPs / the rate of a large square product, plus elementwise FLOPs / the rate of a long
fused elementwise chain), all measured in the same run. Writes
``results/bench/update_cost.parquet`` and a figure of update time against size with each
optimizer's floor dashed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from omegaconf import OmegaConf

from bench.measure.hardware import host_facts
from bench.measure.run_costs import measure_costs
from bench.records.files import atomic_write
from bench.train.settings import RunSettings
from optimizers import build_optimizer
from optimizers.analytic import UpdateCost, update_cost
from optimizers.learned import get_architecture
from optimizers.learned.costs import learned_update_cost
from tasks.synthetic import wide_linear

CONF = Path(__file__).resolve().parents[2] / "conf" / "optimizer"
COLUMNS = 1000


def copy_seconds(num_bytes: int, repeats: int) -> np.ndarray:
    """Seconds of an in-place, donated elementwise pass over ``num_bytes / 2`` bytes.

    Reading and writing a buffer of half the bytes moves ``num_bytes``: the same traffic as an
    update that must move ``num_bytes``, with the least arithmetic.
    """
    x = jnp.zeros((max(1, num_bytes // 8),), jnp.float32)
    bump = jax.jit(lambda a: a + 1.0, donate_argnums=0)
    samples = []
    for i in range(repeats + 3):
        start = time.perf_counter()
        x = jax.block_until_ready(bump(x))
        if i >= 3:
            samples.append(time.perf_counter() - start)
    return np.array(samples)


def minimal_update_seconds(tx: optax.GradientTransformation, rows: int, repeats: int) -> np.ndarray:
    """The plainest honest timing loop of one update: jit, donate, block, repeat."""
    params = {"w": jnp.zeros((rows, COLUMNS)), "b": jnp.zeros((COLUMNS,))}
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)
    state = tx.init(params)

    def update(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    step = jax.jit(update, donate_argnums=(0, 1))
    samples = []
    for i in range(repeats + 3):
        start = time.perf_counter()
        params, state = jax.block_until_ready(step(params, state, grads))
        if i >= 3:
            samples.append(time.perf_counter() - start)
    return np.array(samples)


GEMM_SIZE = 2048  # the square product whose rate is the matrix-product ceiling
CHAIN_ELEMENTS, CHAIN_LINKS = 1 << 20, 64  # a cache-resident buffer, 64 multiply-adds deep


def best_seconds(fn, *args, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls after a warm-up (a rate's ceiling: load on a
    shared machine only ever slows a call down)."""
    jax.block_until_ready(fn(*args))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        samples.append(time.perf_counter() - start)
    return min(samples)


def machine_rates(repeats: int) -> dict[str, float]:
    """FLOP/s of a large square float32 matrix product and of a long fused elementwise chain."""
    a = jnp.ones((GEMM_SIZE, GEMM_SIZE), jnp.float32)
    gemm = best_seconds(jax.jit(lambda x: x @ x), a, repeats=repeats)

    def chain(x):
        for _ in range(CHAIN_LINKS):
            x = x * 0.999 + 0.001
        return x

    x = jnp.ones((CHAIN_ELEMENTS,), jnp.float32)
    elementwise = best_seconds(jax.jit(chain), x, repeats=repeats)
    return {"gemm_flops_per_s": 2 * GEMM_SIZE ** 3 / gemm,
            "elementwise_flops_per_s": 2 * CHAIN_LINKS * CHAIN_ELEMENTS / elementwise}


def analytic_cost(base: str, cfg: Any) -> UpdateCost | None:
    """The analytic per-parameter cost of an optimizer config: a learned one's from its
    settings, a hand-designed one's from the table in ``optimizers.analytic``."""
    if "architecture" in cfg:
        settings = {k: v for k, v in OmegaConf.to_container(cfg).items()
                    if k not in ("_target_", "architecture", "checkpoint", "seed")}
        return learned_update_cost(cfg.architecture, settings)
    return update_cost(base)


def floor_columns(cost: UpdateCost | None, n: int, copy_gbps: float | None,
                  rates: dict[str, float], median: float) -> dict[str, Any]:
    """The floor of an update of ``n`` parameters and how far the measured ``median`` is
    above it."""
    if cost is None or copy_gbps is None:
        return {"floor_s": None, "floor_kind": None, "time_over_floor": None}
    bytes_floor = cost.bytes * n / (copy_gbps * 1e9)
    compute_floor = (cost.matmul_flops * n / rates["gemm_flops_per_s"]
                     + cost.flops * n / rates["elementwise_flops_per_s"])
    floor = max(bytes_floor, compute_floor)
    return {"bytes_floor_s": bytes_floor, "compute_floor_s": compute_floor, "floor_s": floor,
            "floor_kind": "bytes" if bytes_floor >= compute_floor else "flops",
            "time_over_floor": median / floor,
            "update_matmul_flops_per_param_analytic": cost.matmul_flops,
            "update_flops_per_param_analytic": cost.flops}


class Variant(NamedTuple):
    """One optimizer as benchmarked: its label, config name, the setting that varies between
    its variants (an execution path) or None, and its config."""

    label: str
    name: str
    arm: dict[str, Any] | None
    config: Any


def variants(names: list[str]) -> list[Variant]:
    """A variant per optimizer; a learned optimizer with execution paths (a ``path`` setting)
    gets one per path, ``small_fc_lopt/stacked`` and so on, to compare them, and one per
    design option its module lists in ``BENCHMARKED_OPTIONS`` (``small_fc_lopt/lagged``)."""
    out = []
    for name in names:
        cfg = OmegaConf.load(CONF / f"{name}.yaml")
        if "path" in cfg and "architecture" in cfg:
            module = get_architecture(cfg.architecture)
            arms = {path: {"path": path} for path in module.PATHS}
            arms.update(getattr(module, "BENCHMARKED_OPTIONS", {}))
            out += [Variant(f"{name}/{label}", name, arm, OmegaConf.merge(cfg, arm))
                    for label, arm in arms.items()]
        else:
            out.append(Variant(name, name, None, cfg))
    return out


def bench_update_cost(names: list[str], sizes: list[int], repeats: int) -> pd.DataFrame:
    """One row per optimizer and size; all measured in this process, side by side."""
    settings = RunSettings(timing_protocol="per_call", timing_steps=repeats, warmup_steps=3)
    rates = machine_rates(max(3, repeats // 3))
    print(f"machine: {rates['gemm_flops_per_s'] / 1e9:.1f} GFLOP/s in a {GEMM_SIZE}^2 product, "
          f"{rates['elementwise_flops_per_s'] / 1e9:.1f} GFLOP/s elementwise", flush=True)
    rows = []
    for size in sizes:
        rows_ = max(1, size // COLUMNS - 1)
        task = wide_linear(rows=rows_, cols=COLUMNS)
        for name, base, arm, cfg in variants(names):
            tx = build_optimizer(cfg, prefix=f"optimizer[{name}]")
            try:
                costs = measure_costs(task, tx, settings, seed=0)
            except jax.errors.JaxRuntimeError as exc:
                if "RESOURCE_EXHAUSTED" not in str(exc):
                    raise
                # a reference path's full-size stacks outgrow the device at large sizes
                print(f"{name:>22} {size:>11,} params: out of device memory, skipped",
                      flush=True)
                continue
            analytic = analytic_cost(base, cfg)
            n = costs["num_params"]
            moved = None if analytic is None else analytic.bytes * n
            copy = None if moved is None else float(np.median(copy_seconds(moved, repeats)))
            median = costs["update_time_median_s"]
            row = {
                "optimizer": name,
                "optimizer_name": base,
                "arm": arm,
                "num_params": n,
                "update_time_median_s": median,
                "update_time_p10_s": costs["update_time_p10_s"],
                "update_time_p90_s": costs["update_time_p90_s"],
                "update_time_n": costs["update_time_n"],
                "bytes_moved": moved,
                "achieved_gbps": None if moved is None else moved / median / 1e9,
                "copy_gbps": None if moved is None else moved / copy / 1e9,
                "update_flops": costs["update_flops"],
                "update_bytes_accessed": costs["update_bytes_accessed"],
                "update_temp_bytes": costs["update_temp_bytes"],
                "update_temp_floats_per_param": costs["update_temp_bytes"] / 4 / n,
                "loop_bytes": costs["update_loop_bytes"],
                "opt_state_bytes": costs["opt_state_bytes"],
                **floor_columns(analytic, n, None if copy is None else moved / copy / 1e9,
                                rates, median),
                **rates,
            }
            if moved is not None:
                row["bandwidth_ratio"] = row["achieved_gbps"] / row["copy_gbps"]
                if row["loop_bytes"] is not None:  # the same, on what the program moves
                    row["loop_bandwidth_ratio"] = (row["loop_bytes"] / median / 1e9
                                                   / row["copy_gbps"])
            if name == "adam":
                minimal = float(np.median(minimal_update_seconds(tx, rows_, repeats)))
                row["minimal_loop_median_s"] = minimal
                row["harness_vs_minimal"] = median / minimal
            rows.append(row)
            print(f"{name:>22} {n:>11,} params: update {median * 1e3:9.3f} ms"
                  + ("" if moved is None else
                     f", {row['achieved_gbps']:6.1f} GB/s = {row['bandwidth_ratio']:.2f} of copy"
                     + ("" if row["loop_bytes"] is None else
                        f" ({row['loop_bytes'] / 4 / n:.1f} floats/param in its loops: "
                        f"{row['loop_bandwidth_ratio']:.2f} of copy)"))
                  + (f", harness/minimal {row['harness_vs_minimal']:.3f}" if name == "adam"
                     else "")
                  + ("" if row["floor_s"] is None else
                     f", {row['time_over_floor']:.2f}x its {row['floor_kind']} floor"),
                  flush=True)
    table = pd.DataFrame(rows)
    adam = table[table.optimizer == "adam"].set_index("num_params").update_time_median_s
    table["update_over_adam"] = table.update_time_median_s / table.num_params.map(adam)
    facts = host_facts()
    for key in ("device_kind", "cpu_model", "cpu_count", "jax_version", "git_commit"):
        table[key] = facts[key]
    return table


def update_cost_figure(table: pd.DataFrame):
    """Update time against parameter count, one line per optimizer (log-log, p10-p90 bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)  # one colour per line, floors alike
    for name, group in table.groupby("optimizer"):
        group = group.sort_values("num_params")
        y = group.update_time_median_s.to_numpy() * 1e3
        err = [y - group.update_time_p10_s.to_numpy() * 1e3,
               group.update_time_p90_s.to_numpy() * 1e3 - y]
        bars = ax.errorbar(group.num_params.to_numpy(), y, yerr=err, marker="o", capsize=3,
                           label=name)
        if "floor_s" in group and group.floor_s.notna().all():
            ax.plot(group.num_params.to_numpy(), group.floor_s.to_numpy(float) * 1e3, ls="--",
                    lw=0.9, color=bars[0].get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("update time, median (ms; bars p10-p90; dashed: floor)")
    first = table.iloc[0]
    ax.set_title(f"Optimizer update cost; {first.device_kind}, {first.cpu_model} "
                 f"({first.cpu_count} cores)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", nargs="+",
                        default=sorted(p.stem for p in CONF.glob("*.yaml")))
    parser.add_argument("--sizes", nargs="+", type=int, default=[1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    args = parser.parse_args(argv)
    unknown = [n for n in args.optimizers if not (CONF / f"{n}.yaml").exists()]
    if unknown:
        parser.error(f"unknown optimizer(s) {unknown}; known: "
                     f"{sorted(p.stem for p in CONF.glob('*.yaml'))}")
    table = bench_update_cost(args.optimizers, args.sizes, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "update_cost.parquet"
    atomic_write(path, lambda p: table.to_parquet(p, index=False))
    from bench.figures.sweep import save_figure

    figures = save_figure(update_cost_figure(table), args.out, "update_cost")
    print(f"wrote {path} and {figures[0]} (+ PDF)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
