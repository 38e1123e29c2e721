"""Meta-train a learned optimizer: ``make meta-train LOPT=small_fc_lopt`` (``python -m
bench.meta_train``, config conf/meta_train.yaml; the learned optimizer and its design settings
come from conf/optimizer/<LOPT>.yaml and the task family from conf/family/<FAMILY>.yaml, so
any variant is one override away). The library in ``optimizers/meta`` does the meta-training
on Tasks; this entry point builds the family's tasks from their configs, composes the rest and
records the machine it ran on.

Writes results/meta/<name>/: curve.parquet (outer step, meta-loss, evaluation score, wall
time), evaluations.parquet (each validation task's final loss per evaluation), state.npz
(everything needed to resume exactly where a killed run stopped), best.npz and last.npz
(meta-parameter checkpoints that ``optimizer.checkpoint=`` loads). ``keep_state_in=<folder>``
also keeps a small portable copy there (meta-parameters, outer state, curves), meant to be
committed so that another machine carries on from it.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from bench.measure.hardware import host_facts
from bench.sweep import compile_cache
from optimizers.learned import checkpoint as ckpt
from optimizers.learned import get_architecture, load_or_init, make_config
from optimizers.learned.common import count_params
from optimizers.meta.estimators import EstimatorSettings, make_estimator
from optimizers.meta.loop import OuterSettings, evaluate_tasks, meta_train
from tasks.base import Task
from tasks.family import Member, draw_family

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

_NOT_SETTINGS = ("_target_", "architecture", "checkpoint", "seed")


def _settings(section: DictConfig, cls: type, prefix: str) -> Any:
    values = OmegaConf.to_container(section, resolve=True)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"{prefix}.{unknown[0]}: unknown setting; expected one of "
                         f"{sorted(fields)}")
    return cls(**values)


def lopt_from_config(optimizer: DictConfig) -> tuple[str, Any, Any]:
    """(architecture name, its Config, initial theta) from an optimizer config group entry."""
    if optimizer.get("_target_") != "optimizers.learned.learned_optimizer":
        raise ValueError(f"optimizer._target_={optimizer.get('_target_')!r}: meta-training "
                         "needs a learned optimizer config (conf/optimizer/*_lopt.yaml, nn_adam)")
    raw = OmegaConf.to_container(optimizer, resolve=True)
    name = raw["architecture"]
    config = make_config(name, **{k: v for k, v in raw.items() if k not in _NOT_SETTINGS})
    theta = load_or_init(name, config, raw.get("checkpoint"), int(raw.get("seed", 0)))
    return name, config, theta


def family_entries(entries: Any) -> list[dict[str, Any]]:
    """Family entries with ``{task: <name>}`` replaced by that conf/task config."""
    resolved = []
    for entry in OmegaConf.to_container(entries, resolve=True):
        entry = dict(entry)
        if "task" in entry:
            path = CONF_DIR / "task" / f"{entry.pop('task')}.yaml"
            if not path.is_file():
                raise FileNotFoundError(f"family task {path.stem!r}: no config {path}")
            entry["config"] = OmegaConf.to_container(OmegaConf.load(path))
        resolved.append(entry)
    return resolved


def family_members(family: DictConfig) -> tuple[list[Member], list[Member]]:
    """(training members, validation members) of a conf/family entry; sampled validation
    members are never training members."""
    train = draw_family(family_entries(family.train), int(family.seed))
    validation = draw_family(family_entries(family.validation), int(family.validation_seed),
                             exclude=train)
    return train, validation


def build(member: Member) -> Task:
    from hydra.utils import instantiate

    return instantiate(member.config)


def run(cfg: DictConfig) -> Path:
    """Meta-train as ``cfg`` says; returns the path of the best checkpoint."""
    name, config, theta = lopt_from_config(cfg.optimizer)
    module = get_architecture(name)
    estimator_settings = _settings(cfg.meta, EstimatorSettings, "meta")
    outer = _settings(cfg.outer, OuterSettings, "outer")
    train, validation = family_members(cfg.family)
    folder = Path(cfg.results_dir) / "meta" / cfg.name
    mirror = Path(cfg.keep_state_in) if cfg.get("keep_state_in") else None
    if cfg.get("compile_cache"):
        compile_cache.enable(cfg.compile_cache)
    print(f"meta-training {name} ({count_params(theta)} meta-parameters) on "
          f"{len(train)} tasks {[m.name for m in train]}, {outer.tasks_per_step or 'all'} per "
          f"outer step; validated on {[m.name for m in validation]}; {estimator_settings}; "
          f"output {folder}/", flush=True)

    def make_optimizer(theta):
        return module.to_optax(theta, config)

    estimators = [make_estimator(build(m), make_optimizer, estimator_settings) for m in train]
    evaluate = evaluate_tasks([build(m) for m in validation], make_optimizer, outer.eval_steps,
                              outer.eval_seeds)
    state, curve = meta_train(theta, estimators, evaluate, outer, folder,
                              stop_after=cfg.get("stop_after"), weights=[m.weight for m in train],
                              mirror=mirror)
    facts = host_facts()
    recipe = {
        "estimator": dataclasses.asdict(estimator_settings),
        "outer": dataclasses.asdict(outer),
        "family_name": cfg.family.name,
        "family": [{"name": m.name, "weight": m.weight, **m.config} for m in train],
        "validation": [{"name": m.name, **m.config} for m in validation],
        "initialisation": cfg.optimizer.get("checkpoint") or f"seed {cfg.optimizer.get('seed', 0)}",
        "outer_steps_done": int(curve["outer_step"].max()),
        "wall_time_s": float(curve["wall_time_s"].max()),
        "best_eval_loss": float(state.best_eval),
        "machine": f"{facts['device_kind']} ({facts['cpu_model']}, {facts['cpu_count']} cores)",
        "jax_version": facts["jax_version"],
        "git_commit": facts["git_commit"],
    }
    best = ckpt.save(folder / "best.npz", name, config, state.best_theta, extra={"recipe": recipe})
    ckpt.save(folder / "last.npz", name, config, state.theta, extra={"recipe": recipe})
    print(f"best evaluation score {float(state.best_eval):.4f}; checkpoint {best}")
    if cfg.get("ship") and recipe["outer_steps_done"] < outer.steps:
        print(f"stopped at outer step {recipe['outer_steps_done']}/{outer.steps}: not shipped "
              f"to {cfg.ship} (run again with the same name to carry on)")
    elif cfg.get("ship"):
        ship = Path(cfg.ship)
        ship.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best, ship)
        print(f"shipped to {ship}")
    return best


@hydra.main(config_path="../conf", config_name="meta_train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
