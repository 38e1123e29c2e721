"""``RunSpec``: one run as a sweep plans it, with the identity that names its record."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf


def run_id(identity: Mapping[str, Any]) -> str:
    """A short stable hash of everything that defines a run (its resolved config)."""
    canonical = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its names, its composed config and its identity.

    Attributes:
      optimizer: the display label, unique per arm (``adam(learning_rate=0.01)``).
      task: the task's display label.
      seed: the run's seed.
      overrides: the command-line overrides the config was composed with (for the record).
      config: the composed config (``optimizer``, ``task``, ``run``, ...).
      optimizer_name: the optimizer's config name, or the target's name when the command line
        replaced the target.
      arm: the optimizer settings the preset varies for this arm (empty for a single setting).
      optimizer_config: the optimizer's config file name, when its target is unchanged.
      code_version: see ``bench.sweep.code_version``; None: not part of the identity.
      vmapped: trained with other seeds in one program.
      data_fingerprint: the task's ``Task.data_fingerprint`` (None: data generated from the
        config); part of the identity, so that a run on other data is another run.
      checkpoint_digest: a hash of the learned optimizer's checkpoint file (None: none); part
        of the identity, so that a run with re-trained meta-parameters is another run.
      tuned_from: the table of tuned learning rates this arm's rate was read from
        (``sweep.tuned``; None: the preset sets the rate); not part of the identity, which the
        rate itself is.
    """

    optimizer: str
    task: str
    seed: int
    overrides: tuple[str, ...]
    config: DictConfig = field(repr=False, compare=False)
    optimizer_name: str = ""
    arm: Mapping[str, Any] = field(default_factory=dict, compare=False)
    optimizer_config: str = ""
    code_version: str | None = None
    vmapped: bool = False
    data_fingerprint: str | None = None
    checkpoint_digest: str | None = None
    tuned_from: str | None = field(default=None, compare=False)

    @property
    def config_identity(self) -> dict[str, Any]:
        """What the config says about the run: optimizer, task, run settings, seed and how the
        run is executed (vmapped or not; the latter adds nothing, keeping older ids valid)."""
        pick = {k: OmegaConf.to_container(self.config[k], resolve=True)
                for k in ("optimizer", "task", "run")}
        return {**pick, "seed": self.seed, **({"vmapped": True} if self.vmapped else {}),
                **({"data": self.data_fingerprint} if self.data_fingerprint else {}),
                **({"checkpoint": self.checkpoint_digest} if self.checkpoint_digest else {})}

    @property
    def identity(self) -> dict[str, Any]:
        """Everything that defines the run's result, the code version included; hashed into
        its run id."""
        code = {} if self.code_version is None else {"code": self.code_version}
        return {**self.config_identity, **code}

    @property
    def run_id(self) -> str:
        return run_id(self.identity)

    @property
    def config_id(self) -> str:
        """The run's id without the code version: the same run under other code shares it."""
        return run_id(self.config_identity)

    @property
    def seed_group(self) -> str:
        """Runs that differ only in seed share this key (they can train as one program)."""
        return run_id({k: v for k, v in self.config_identity.items() if k != "seed"})

    def to_payload(self) -> dict[str, Any]:
        """Plain data from which ``from_payload`` rebuilds this spec exactly (for a worker)."""
        config = {k: OmegaConf.to_container(self.config[k], resolve=True)
                  for k in ("optimizer", "task", "run")}
        config["seed"] = self.seed
        return {"optimizer": self.optimizer, "task": self.task, "seed": self.seed,
                "overrides": list(self.overrides), "config": config,
                "optimizer_name": self.optimizer_name, "arm": dict(self.arm),
                "optimizer_config": self.optimizer_config, "code_version": self.code_version,
                "vmapped": self.vmapped, "data_fingerprint": self.data_fingerprint,
                "checkpoint_digest": self.checkpoint_digest, "tuned_from": self.tuned_from}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> RunSpec:
        return cls(data["optimizer"], data["task"], int(data["seed"]), tuple(data["overrides"]),
                   OmegaConf.create(data["config"]), data["optimizer_name"], data["arm"],
                   data["optimizer_config"], data["code_version"], data["vmapped"],
                   data["data_fingerprint"], data.get("checkpoint_digest"),
                   data.get("tuned_from"))
