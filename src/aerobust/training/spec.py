"""A training spec: everything that determines a trained model, hashed to its run name."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aerobust.errors import UserError
from aerobust.models import model_kind

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
METHODS = ("standard", "regularization", "alternating")
ADVERSARIAL_KEYS = {"eps", "steps", "step_size"}

# Fields added after the first runs were stored: left out of the hash while they hold
# these defaults, so runs trained before they existed keep their names.
_HASHED_ONLY_IF_SET: dict[str, Any] = {"method": "standard", "lam": 0.0, "gamma": 0,
                                       "adversarial": {}}


@dataclass(frozen=True)
class TrainSpec:
    """Model, data, loss, optimizer, schedule, epochs and seed of one training run.

    ``arch_kwargs`` holds the full constructor arguments (channels, image size and
    classes included), so the spec alone rebuilds the model.
    """

    kind: str  # "classifier" or "autoencoder"
    arch: str
    dataset: str
    data_checksum: str
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    loss: str = "ce"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    augment: bool = False
    # Joint training of a latent classifier (the paper's Sec. 3.2): "regularization"
    # minimises CE + lam * reconstruction MSE; "alternating" makes one CE step and then
    # gamma reconstruction steps per batch.
    method: str = "standard"
    lam: float = 0.0
    gamma: int = 0
    # PGD adversarial training (Madry): {"eps", "steps", "step_size"} in [0,1] units;
    # empty for clean training.
    adversarial: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if model_kind(self.arch) != self.kind:
            raise UserError(f"{self.arch} is a {model_kind(self.arch)}, not a {self.kind}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UserError(f"learning rate must be positive, got {self.lr}")
        self._check_method()
        self._check_adversarial()

    def _check_method(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown training method {self.method!r}; known: "
                            f"{', '.join(METHODS)}")
        if self.method != "standard" and self.arch != "latent-classifier":
            raise UserError(f"method {self.method} trains a latent-classifier, not {self.arch}")
        if self.lam < 0 or (self.lam and self.method != "regularization"):
            raise UserError(f"lambda {self.lam}: must be >= 0, and is used only by the "
                            "regularization method")
        if self.gamma < 0 or (self.gamma and self.method != "alternating"):
            raise UserError(f"gamma {self.gamma}: must be >= 0, and is used only by the "
                            "alternating method")

    def _check_adversarial(self) -> None:
        adv = self.adversarial
        if not adv:
            return
        if self.kind != "classifier" or not ADVERSARIAL_KEYS <= set(adv) <= (
                ADVERSARIAL_KEYS | {"ramp_epochs"}):
            raise UserError(f"adversarial training of a classifier needs "
                            f"{sorted(ADVERSARIAL_KEYS)} (and optionally ramp_epochs), "
                            f"got {sorted(adv)}")
        if not (0 < adv["eps"] <= 1 and 0 < adv["step_size"] <= 1 and adv["steps"] >= 1
                and adv.get("ramp_epochs", 0) >= 0):
            raise UserError(f"adversarial training settings out of range: {adv} "
                            "(eps and step size in (0,1] pixel units, steps >= 1, "
                            "ramp_epochs >= 0)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainSpec:
        return cls(**d)

    def replace(self, **changes: Any) -> TrainSpec:
        return dataclasses.replace(self, **changes)

    @property
    def digest(self) -> str:
        """Hash of the canonical JSON of the spec: same spec, same run directory.

        The data enter by their checksum, not by ``dataset``: that name can be a path
        (``npz:/tmp/.../split.npz``), and the same images at another path train the
        same model, so they must find the same run (the run's name still shows the
        file's name)."""
        return spec_digest({k: v for k, v in self.to_dict().items()
                            if k not in _HASHED_ONLY_IF_SET or v != _HASHED_ONLY_IF_SET[k]})

    @property
    def run_name(self) -> str:
        return run_name(f"{self.kind}-{self.arch}", self.dataset, self.digest)


def spec_digest(spec: dict[str, Any]) -> str:
    """SHA-256 of a spec's canonical JSON, ``dataset`` left out (the checksum stands for
    the data; see ``TrainSpec.digest``)."""
    d = {k: v for k, v in spec.items() if k != "dataset"}
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def run_name(prefix: str, dataset: str, digest: str) -> str:
    """``prefix-data-digest12``: the data's file name, made safe, for people to read."""
    data = re.sub(r"[^A-Za-z0-9]+", "-", dataset.rsplit("/", 1)[-1]).strip("-")
    return f"{prefix}-{data}-{digest[:12]}"
