"""Benchmark: meta-training throughput (outer steps per second) against the number of inner
problems per outer step (``make bench BENCH=meta_throughput``).

A learned optimizer (its conf/optimizer config) is meta-trained as the family recipe does:
one PES estimator per training task of a family (conf/family), ``k`` of them drawn per outer
step in proportion to their weights, their estimates combined and applied by Adam; this times
that outer step (``optimizers.meta.loop.combined_estimate`` and the outer update, the device
synchronised before the clock is read) for each ``k``. Every estimator is compiled and run once
before any timing, so no compile is in a step time; evaluation is left out (it runs every few
hundred steps and is timed by the meta-training's own curve). Writes
``results/bench/meta_throughput.parquet``: one row per ``k``, with step-time quantiles, outer
steps per second and inner training steps per second (``k`` x 2 signs x pairs x truncation).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from bench.measure.hardware import host_facts
from bench.meta_train import CONF_DIR, build, family_members, lopt_from_config
from bench.records.files import atomic_write
from optimizers.learned import get_architecture
from optimizers.meta.estimators import EstimatorSettings, make_estimator
from optimizers.meta.loop import (
    OuterSettings,
    combined_estimate,
    draw_tasks,
    outer_apply,
    outer_optimizer,
)


def load_config(group: str, name: str, overrides: list[str]) -> DictConfig:
    """conf/<group>/<name>.yaml with ``key=value`` overrides applied."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        raise FileNotFoundError(f"--{group} {name}: no config {path}; known: {known}")
    return OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides))


def measure(optimizer: str, family: str, counts: list[int], steps: int,
            overrides: list[str], settings: EstimatorSettings | None = None,
            balance: str = "unit") -> pd.DataFrame:
    """One row per count of tasks per outer step: the median and spread of ``steps`` timed
    outer steps (after every estimator's compile), with the family recipe's estimator
    ``settings`` (conf/meta_train.yaml's defaults)."""
    name, config, theta = lopt_from_config(load_config("optimizer", optimizer, overrides))
    module = get_architecture(name)
    train, _ = family_members(load_config("family", family, []))
    settings = settings or EstimatorSettings()
    estimators = [make_estimator(build(m), lambda t: module.to_optax(t, config), settings)
                  for m in train]
    weights = [m.weight for m in train]
    update, _ = outer_optimizer(OuterSettings(steps=1000))
    apply = outer_apply(update)
    key = jax.random.key(0)
    particles = tuple(est.init(theta, jax.random.fold_in(key, i))
                      for i, est in enumerate(estimators))
    outer_state = update.init(theta)
    start = time.perf_counter()
    gradient, particles, _ = combined_estimate(estimators, theta, particles,
                                               range(len(estimators)), key, balance)
    jax.block_until_ready(apply(theta, outer_state, gradient))
    compile_s = time.perf_counter() - start
    print(f"{len(estimators)} estimators compiled and run once in {compile_s:.1f} s",
          flush=True)
    rows, step = [], 0
    for count in sorted({min(c, len(estimators)) for c in counts}):  # more: all of them
        seconds = []
        for _ in range(steps):
            step += 1
            chosen = draw_tasks(count, weights, 0, step)
            tick = time.perf_counter()
            gradient, particles, loss = combined_estimate(
                estimators, theta, particles, chosen, jax.random.fold_in(key, step), balance)
            theta, outer_state, _ = apply(theta, outer_state, gradient)
            jax.block_until_ready((theta, loss))
            seconds.append(time.perf_counter() - tick)
        median = float(np.median(seconds))
        rows.append({
            "optimizer": optimizer, "family": family, "tasks_per_step": count,
            "family_tasks": len(estimators), "timed_steps": steps,
            "step_time_median_s": median,
            "step_time_p10_s": float(np.quantile(seconds, 0.1)),
            "step_time_p90_s": float(np.quantile(seconds, 0.9)),
            "outer_steps_per_s": 1.0 / median,
            "inner_steps_per_s": count * 2 * settings.particles * settings.truncation / median,
            "particles": settings.particles, "truncation": settings.truncation,
            "compile_all_s": compile_s,
        })
        row = rows[-1]
        print(f"{count:>3} tasks per step: {row['outer_steps_per_s']:.2f} outer steps/s "
              f"(step {median * 1e3:.0f} ms, p10-p90 {row['step_time_p10_s'] * 1e3:.0f}-"
              f"{row['step_time_p90_s'] * 1e3:.0f}), {row['inner_steps_per_s']:.0f} inner "
              "steps/s", flush=True)
    facts = host_facts()
    return pd.DataFrame(rows).assign(**{k: facts[k] for k in (
        "device_kind", "cpu_model", "cpu_count", "jax_version", "git_commit")})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="small_fc_lopt", help="a conf/optimizer config")
    parser.add_argument("--family", default="image_family", help="a conf/family config")
    parser.add_argument("--tasks-per-step", nargs="+", type=int, default=[1, 2, 4, 8, 10])
    parser.add_argument("--steps", type=int, default=20, help="timed outer steps per count")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="optimizer config overrides, e.g. use_factored=false")
    parser.add_argument("--particles", type=int, default=EstimatorSettings.particles,
                        help="antithetic pairs per task")
    parser.add_argument("--truncation", type=int, default=EstimatorSettings.truncation,
                        help="inner steps per estimate")
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    args = parser.parse_args(argv)
    if args.steps < 3 or min(args.tasks_per_step) < 1:
        parser.error(f"--steps {args.steps} --tasks-per-step {args.tasks_per_step}: need at "
                     "least 3 steps and at least 1 task per step")
    try:
        settings = EstimatorSettings(particles=args.particles, truncation=args.truncation)
        table = measure(args.optimizer, args.family, args.tasks_per_step, args.steps, args.set,
                        settings)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "meta_throughput.parquet"
    atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
