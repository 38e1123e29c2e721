"""Meta-train a learned optimizer: ``make meta-train LOPT=small_fc_lopt`` (``python -m
bench.meta_train``, config conf/meta_train.yaml; the learned optimizer and its design settings
come from conf/optimizer/<LOPT>.yaml, so any variant is one override away). The library in
``optimizers/meta`` does the meta-training; this entry point composes it and records the
machine it ran on.

Writes results/meta/<name>/: curve.parquet (outer step, meta-loss, evaluation loss, wall time),
state.npz (everything needed to resume exactly where a killed run stopped), best.npz and
last.npz (meta-parameter checkpoints that ``optimizer.checkpoint=`` loads).
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
from optimizers.learned import checkpoint as ckpt
from optimizers.learned import get_architecture, load_or_init, make_config
from optimizers.learned.common import count_params
from optimizers.meta.estimators import EstimatorSettings, make_estimator
from optimizers.meta.loop import OuterSettings, make_evaluation, meta_train
from optimizers.meta.problems import ProblemSpec, fashion_mnist_problem, sample_specs

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


def run(cfg: DictConfig) -> Path:
    """Meta-train as ``cfg`` says; returns the path of the best checkpoint."""
    name, config, theta = lopt_from_config(cfg.optimizer)
    module = get_architecture(name)
    estimator_settings = _settings(cfg.meta, EstimatorSettings, "meta")
    outer = _settings(cfg.outer, OuterSettings, "outer")
    family = OmegaConf.to_container(cfg.family, resolve=True)
    specs = sample_specs(family.pop("seed"), family.pop("num_problems"), **family)
    evaluation = _settings(cfg.evaluation, ProblemSpec, "evaluation")
    folder = Path(cfg.results_dir) / "meta" / cfg.name
    print(f"meta-training {name} ({count_params(theta)} meta-parameters) on "
          f"{[s.name for s in specs]}; {estimator_settings}; evaluated on {evaluation.name}; "
          f"output {folder}/", flush=True)

    def make_optimizer(theta):
        return module.to_optax(theta, config)

    estimators = [make_estimator(fashion_mnist_problem(s), make_optimizer, estimator_settings)
                  for s in specs]
    evaluate = make_evaluation(fashion_mnist_problem(evaluation), make_optimizer,
                               outer.eval_steps, outer.eval_seeds)
    state, curve = meta_train(theta, estimators, evaluate, outer, folder,
                              stop_after=cfg.get("stop_after"))
    facts = host_facts()
    recipe = {
        "estimator": dataclasses.asdict(estimator_settings),
        "outer": dataclasses.asdict(outer),
        "family": [dataclasses.asdict(s) for s in specs],
        "evaluation_problem": dataclasses.asdict(evaluation),
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
    print(f"best evaluation loss {float(state.best_eval):.4f}; checkpoint {best}")
    if cfg.get("ship"):
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
