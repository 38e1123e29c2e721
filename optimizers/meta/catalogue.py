"""The catalogue of shipped meta-trained checkpoints: ``python -m optimizers.meta.catalogue``
copies each one's outer curve (and per-task evaluations) from results/meta/<name>/ to
results/reference/meta/<name>/, drops the portable resume state kept there while it trained
(the checkpoint has shipped), and writes optimizers/learned/checkpoints/README.md from the
recipes stored in the checkpoints' headers, so the page can never disagree with the files."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from optimizers.learned import checkpoint as ckpt
from optimizers.learned import get_architecture

REFERENCE_CURVES = Path("results/reference/meta")

INTRO = """# Meta-trained checkpoints

Meta-parameters produced by this project's meta-training (`optimizers/meta/`), one `.npz` per
learned optimizer or design variant. Load one with `optimizer.checkpoint=<name>` (its other
settings must match the variant's, listed below). Rebuild them all with `make checkpoints`
(recipes in the Makefile); this page is generated from the files' headers by
`python -m optimizers.meta.catalogue`.

Budget, honestly: each was meta-trained for a few thousand outer steps of PES (4 antithetic
pairs x 30 inner steps each per task, so about 0.2-0.4 M inner steps per thousand outer steps
and task) on a 2-core CPU, in minutes to about an hour. The paper's recipe runs 100k outer
steps over a family of tasks on accelerators. Checkpoints whose names carry `family` were
meta-trained on a family of small image tasks (`conf/family/`); the others are specialists,
meta-trained on the standard task alone. How each does on tasks none was meta-trained on:
`make sweep SWEEP=generalisation` ([docs/meta_training.md](../../../docs/meta_training.md)).

Meta-parameters start from `init_meta` with seed 0, except two small networks that start from
seed 2. `small_fc_lopt_hidden1`: at seed 0 the weight between its two width-1 ReLU layers is
negative, so every update is zero and PES gets no signal (its seed-0 run stayed at loss
ln 10 = 2.3026 for 3,000 outer steps). `small_fc_lopt_lean` (2 hidden units): from seed 0 it
plateaued at loss 0.685 and from seed 1 it stayed at ln 10 (3,000 outer steps each).

"""


def _settings(name: str, config: dict[str, Any]) -> str:
    """The settings that differ from the architecture's defaults."""
    defaults = dataclasses.asdict(get_architecture(name).Config())
    changed = {k: v for k, v in config.items()
               if k not in ckpt.EXECUTION_SETTINGS and list(_tuple(defaults.get(k))) != list(
                   _tuple(v))}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "defaults"


def _tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def describe(path: Path) -> dict[str, Any]:
    """One catalogue row from a checkpoint's header."""
    header = ckpt.read_header(path)
    recipe = header.get("recipe", {})
    est, outer = recipe.get("estimator", {}), recipe.get("outer", {})
    family = _family(recipe)
    return {
        "checkpoint": path.stem,
        "architecture": header["architecture"],
        "settings": _settings(header["architecture"], header["config"]),
        "estimator": (f"{est.get('kind', '?').upper()}, {est.get('particles')} pairs, "
                      f"truncation {est.get('truncation')}, episodes {est.get('inner_length')},"
                      f" std {est.get('std')}"),
        "outer": (f"{recipe.get('outer_steps_done')} steps of Adam "
                  f"(peak lr {outer.get('learning_rate')}, clip {outer.get('clip')}"
                  + (f", {outer['tasks_per_step']} tasks per step" if outer.get("tasks_per_step")
                     else "")
                  + (", estimates at unit norm" if outer.get("balance") == "unit" else "")
                  + f"); from {_start(recipe.get('initialisation'))}; kept: outer step "
                  f"{_best_step(path.stem)}"),
        "family": family,
        "wall_time_min": round(recipe.get("wall_time_s", float("nan")) / 60, 1),
        "machine": recipe.get("machine"),
        "best_eval_loss": round(recipe.get("best_eval_loss", float("nan")), 4),
        "curve": str(REFERENCE_CURVES / path.stem / "curve.parquet"),
    }


def _start(initialisation: str | None) -> str:
    """Where the meta-parameters started: a seed of ``init_meta`` or another checkpoint."""
    if not initialisation:
        return "init_meta"
    if str(initialisation).startswith("seed"):
        return f"init_meta ({initialisation})"
    return f"checkpoint `{Path(str(initialisation)).stem}`"


def _best_step(name: str) -> str:
    """The outer step whose meta-parameters were kept (lowest evaluation), from the curve."""
    curve = REFERENCE_CURVES / name / "curve.parquet"
    if not curve.is_file():
        return "?"
    table = pd.read_parquet(curve).dropna(subset=["eval_loss"])
    return str(int(table.loc[table["eval_loss"].idxmin(), "outer_step"])) if len(table) else "?"


def _family(recipe: dict[str, Any]) -> str:
    """What a checkpoint was meta-trained on, from its recipe (named family members, or the
    image-MLP specs of recipes that predate families)."""
    members = recipe.get("family", [])
    if recipe.get("family_name") and recipe["family_name"] != "standard":
        return (f"family `{recipe['family_name']}`: {len(members)} tasks "
                f"({', '.join(m['name'] for m in members)})")
    return ", ".join(
        f"Fashion-MNIST {m['image_size']}x{m['image_size']} MLP "
        f"{'x'.join(map(str, m['hidden_sizes']))} batch {m['batch_size']}" for m in members)


def render(rows: list[dict[str, Any]]) -> str:
    lines = [INTRO, "| checkpoint | learned optimizer | settings | estimator | outer loop | "
             "meta-trained on | wall time (min) | machine | best held-out loss* | outer curve |",
             "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| `{r['checkpoint']}` | {r['architecture']} | {r['settings']} | "
                     f"{r['estimator']} | {r['outer']} | {r['family']} | {r['wall_time_min']} |"
                     f" {r['machine']} | {r['best_eval_loss']} | `{r['curve']}` |")
    lines += ["", "*Mean over 3 held-out seeds of the final training loss (mean of the last 10% "
              "of 2,000 steps) on the validation tasks (the standard task for specialists; for a "
              "family, the geometric mean over its validation tasks), the criterion that chose "
              "which outer step's meta-parameters were kept.", ""]
    return "\n".join(lines)


def main() -> None:
    rows = []
    for path in sorted(ckpt.SHIPPED_DIR.glob("*.npz")):
        kept = REFERENCE_CURVES / path.stem
        for table in ("curve.parquet", "evaluations.parquet"):
            source = Path("results/meta") / path.stem / table
            if source.is_file():
                kept.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, kept / table)
        if (kept / "resume.npz").exists():
            (kept / "resume.npz").unlink()
            print(f"{path.stem} has shipped: removed its portable state {kept / 'resume.npz'}")
        rows.append(describe(path))
    (ckpt.SHIPPED_DIR / "README.md").write_text(render(rows))
    print(pd.DataFrame(rows)[["checkpoint", "settings", "outer", "best_eval_loss"]].to_string())


if __name__ == "__main__":
    main()
