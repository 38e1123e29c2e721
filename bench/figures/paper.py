"""Draw every figure of the paper set from the tables on disk into results/paper/figures/,
with results/paper/README.md as the index page: ``python -m bench.figures.paper``
(``make figures``). Nothing is trained; a missing table is named on its figure and in the
index with the command that makes it.

``--origin reference`` draws from the shipped reference tables only (tests and notebooks).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from bench.figures import sources, style

OUT = Path("results/paper")


@dataclass
class Group:
    """One figure group as drawn: its files, caption, the tables it read and their notes."""

    name: str
    title: str
    caption: str
    files: list[Path] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    markdown: str = ""


def describe_scale(runs: pd.DataFrame | None, origin: str = "") -> str:
    """Tasks, steps, seeds and batch sizes of a runs table, in words."""
    if runs is None or runs.empty:
        return "no runs"
    parts = [f"{runs.task.nunique()} task arm(s) ({', '.join(sorted(runs.task.unique())[:3])}"
             f"{', ...' if runs.task.nunique() > 3 else ''})"]
    if "steps" in runs and runs.steps.notna().any():
        steps = sorted({int(s) for s in runs.steps.dropna()})
        parts.append("timing only" if steps == [0] else
                     f"{'/'.join(map(str, steps))} training steps")
    if "seed" in runs:
        parts.append(f"{runs.seed.nunique()} seed(s)")
    if "batch_size" in runs and runs.batch_size.notna().any():
        sizes = sorted({int(b) for b in runs.batch_size.dropna()})
        parts.append(f"batch {sizes[0]}" if len(sizes) == 1 else f"batch {sizes[0]}-{sizes[-1]}")
    if "num_params" in runs and runs.num_params.notna().any():
        params = sorted({int(p) for p in runs.num_params.dropna()})
        parts.append(f"{params[0]:,}" + (f"-{params[-1]:,}" if len(params) > 1 else "")
                     + " parameters")
    if "reference" in origin:
        parts.append("shipped reference table (scaled down)")
    return ", ".join(parts)


def _notes(*tables: sources.Table) -> list[str]:
    return [note for t in tables if (note := t.note())]


def _draw(group: Group, out: Path, draw: Callable[[], tuple[plt.Figure, style.PlotData]],
          name: str) -> None:
    fig, data = draw()
    group.files += style.save_figure(fig, out / "figures", name, data)


def build(out: Path = OUT, origin: str = "latest", results: Path = sources.RESULTS,
          reference: Path = sources.REFERENCE) -> list[Group]:
    """Draw all nine figure groups and write the index page; returns what was drawn."""
    from bench.figures import (
        ablation,
        architecture,
        compute,
        curves,
        generalisation,
        lopt_cost,
        memory,
        pareto,
        variant_tradeoff,
    )

    load = lambda name: sources.load(name, origin, results, reference)  # noqa: E731
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    groups = []

    g = Group("memory", "1. Memory: optimizer state per parameter",
              "Optimizer-state floats per parameter of every configured optimizer, counted "
              "exactly from the optax state on a 256x128 matrix and a 128-element vector. "
              "Adafactor's factored rows and columns cost almost nothing on a matrix; the "
              "learned optimizers hold 2 (nn_adam) to 10 (rnn_mlp_lopt) floats.")
    table = memory.memory_table()
    table.to_csv(figures / "memory_table.csv", index=False)
    g.markdown = memory.memory_markdown(table)
    (figures / "memory_table.md").write_text(g.markdown)
    g.files += [figures / "memory_table.csv", figures / "memory_table.md"]
    g.tables.append("conf/optimizer/*.yaml (state shapes; nothing run)")
    _draw(g, out, lambda: memory.memory_figure(table), "memory")
    groups.append(g)

    over, bench = load("overhead"), load("update_cost")
    g = Group("compute", "2. Compute: step-time overhead",
              "Each optimizer's training-step time over a plain-SGD step (timed side by side) "
              "and over Adam's, against batch size and against parameter count, the learned "
              "optimizers included (freshly initialised: their cost does not depend on "
              "training); right: the update alone over SGD's and Adam's update at 1M and 10M "
              "parameters. Bars span the 10th-90th percentile over timing repeats.")
    if not over.missing and (note := compute.crossover_note(
            compute.overhead_table(style.one_machine(over.runs, [])))):
        g.caption += " " + note
    g.tables += [over.origin, bench.origin]
    g.notes = _notes(over, bench)
    scale = f"{describe_scale(over.runs, over.origin)}; benchmark at " + (
        ", ".join(f"{int(n):,}" for n in sorted(bench.runs.num_params.unique()))
        + " parameters" if not bench.missing else "no benchmark")
    _draw(g, out, lambda: compute.compute_figure(over.runs, bench.runs, scale, g.notes),
          "compute")
    groups.append(g)

    design = load("lopt_design")
    g = Group("lopt_cost", "3. The per-parameter network's cost",
              "small_fc_lopt's step time over a plain-SGD step against the hidden size of its "
              "per-parameter network (1 or 2 hidden layers), against the number of input "
              "features (feature groups removed), and for the stacked and unrolled execution "
              "paths.")
    g.tables.append(design.origin)
    g.notes = _notes(design)
    _draw(g, out, lambda: lopt_cost.lopt_cost_figure(
        design.runs, describe_scale(design.runs, design.origin), g.notes), "lopt_cost")
    groups.append(g)

    abl = load("lopt_ablation")
    g = Group("ablation", "4. Feature ablations",
              "small_fc_lopt's final evaluation loss (mean over seeds, 95% bootstrap interval) "
              "with feature groups removed or the network resized, beside its cost; dashed "
              "lines: hand-designed optimizers in the same table.")
    g.tables.append(abl.origin)
    g.notes = _notes(abl)
    _draw(g, out, lambda: ablation.ablation_figure(
        abl.runs, describe_scale(abl.runs, abl.origin), g.notes), "ablation")
    groups.append(g)

    hand, learned = load("default"), load("lopt_vs_adam")
    present = [t for t in (hand, learned) if not t.missing]
    runs = pd.concat([t.runs for t in present], ignore_index=True) if present else None
    curves_tables = [t.curves for t in present if t.curves is not None]
    curve_rows = pd.concat(curves_tables, ignore_index=True) if curves_tables else None
    scale = "; ".join(describe_scale(t.runs, t.origin) for t in present) or "no runs"
    g = Group("pareto", "5. Pareto fronts: performance against compute and memory",
              "Final training loss over tuned Adam's at the same step (the lower envelope of "
              "its learning-rate sweep; raw final evaluation loss where no reference exists) "
              "against the training-step time and against optimizer-state memory; mean over "
              "seeds with 95% bootstrap intervals, the front in black. Each optimizer at its "
              "best learning rate where several were run.")
    g.tables += [hand.origin, learned.origin]
    g.notes = _notes(hand, learned)
    _draw(g, out, lambda: pareto.pareto_figure(runs, curve_rows, scale, g.notes), "pareto")
    groups.append(g)

    g = Group("curves", "6. Loss curves",
              "Training loss (50-step moving average) and evaluation loss of each optimizer, "
              "mean over seeds with a 95% bootstrap band over seeds.")
    g.tables += [hand.origin, learned.origin]
    g.notes = _notes(hand, learned)
    chosen = pareto.best_arms(runs, "final_eval_loss") if runs is not None else None
    _draw(g, out, lambda: curves.curves_figure(chosen, curve_rows, scale, g.notes), "curves")
    groups.append(g)

    g = Group("architecture", "7. Learned optimizer architectures",
              "Per-parameter inputs and network, meta-parameters counted from init_meta, state "
              "floats per parameter measured from the optax state (256x128 weight and bias), "
              "and the per-parameter network's matrix-product FLOPs; XLA's count of the whole "
              "update from the benchmark where present.")
    arch = architecture.architecture_table(bench.runs)
    arch.to_csv(figures / "architecture_table.csv", index=False)
    g.markdown = architecture.architecture_markdown(arch)
    (figures / "architecture_table.md").write_text(g.markdown)
    g.files += [figures / "architecture_table.csv", figures / "architecture_table.md"]
    g.tables += ["optimizers/learned/ (init_meta, optax state)", bench.origin]
    _draw(g, out, lambda: architecture.architecture_figure(arch), "architecture")
    groups.append(g)

    held_out = load("generalisation")
    g = Group("generalisation", "8. Generalisation to held-out tasks",
              "Per task that no checkpoint was meta-trained on, each learned optimizer's final "
              "training loss over tuned Adam's (mean over seeds, 95% bootstrap interval; "
              "hollow: specialists meta-trained on the standard task, filled: family-trained) "
              "and its speedup over Adam; the per-task Pareto fronts beside it.")
    g.tables.append(held_out.origin)
    g.notes = _notes(held_out)
    if held_out.missing:
        _draw(g, out, lambda: generalisation.generalisation_figure(
            pd.DataFrame(columns=list(generalisation.TABLE_COLUMNS)),
            "no runs", "unknown hardware", g.notes), "generalisation")
    else:
        scale = describe_scale(held_out.runs, held_out.origin)
        g.files += generalisation.draw(held_out.runs, held_out.curves, figures, scale)
        _draw(g, out, lambda: pareto.pareto_figure(held_out.runs, held_out.curves, scale,
                                                   g.notes), "generalisation_pareto")
    groups.append(g)

    g = Group("variants", "9. Faster small_fc_lopt variants: loss against update time",
              "Each family-trained small_fc_lopt design variant's final training loss over the "
              "exact design's meta-trained on the same family on the held-out tasks, same seeds "
              "(geometric mean over tasks; bars: range over tasks), against its update time "
              "over Adam's at the update benchmark's largest size (its fastest path); designs "
              "benchmarked but not meta-trained marked on the time axis.")
    g.tables += [held_out.origin, bench.origin]
    g.notes = _notes(held_out, bench)
    _draw(g, out, lambda: variant_tradeoff.tradeoff_figure(
        held_out.runs, bench.runs, describe_scale(held_out.runs, held_out.origin), g.notes),
        "variants")
    groups.append(g)

    write_index(groups, out)
    return groups


def write_index(groups: list[Group], out: Path) -> Path:
    """results/paper/README.md: every figure with its caption, tables, notes and files."""
    lines = ["# Figures of the paper set", "",
             "Drawn by `make figures` from the tables on disk (`make paper` runs the sweeps "
             "first). Each figure's footnote states the hardware and scale; each has a CSV of "
             "the values it plots beside it.", ""]
    for g in groups:
        png = next((f for f in g.files if f.suffix == ".png"), None)
        lines += [f"## {g.title}", ""]
        if png is not None:
            lines += [f"![{g.title}]({png.relative_to(out).as_posix()})", ""]
        lines += [f"*{g.caption}*", ""]
        if g.markdown:
            lines += [g.markdown, ""]
        lines.append("Tables: " + "; ".join(f"`{t}`" for t in g.tables))
        lines.append("")
        for note in g.notes:
            lines += [f"> {note}", ""]
        lines.append("Files: " + ", ".join(f"[{f.name}]({f.relative_to(out).as_posix()})"
                                           for f in g.files))
        lines.append("")
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--origin", choices=sources.ORIGINS, default="latest")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    groups = build(args.out, args.origin)
    for g in groups:
        for note in g.notes:
            print(f"{g.name}: {note}")
    count = sum(f.suffix == ".png" for g in groups for f in g.files)
    print(f"{count} figures in {args.out / 'figures'}, index {args.out / 'README.md'} "
          f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
