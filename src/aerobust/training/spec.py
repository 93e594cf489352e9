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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainSpec:
        return cls(**d)

    def replace(self, **changes: Any) -> TrainSpec:
        return dataclasses.replace(self, **changes)

    @property
    def digest(self) -> str:
        """Hash of the canonical JSON of the spec: same spec, same run directory."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def run_name(self) -> str:
        data = re.sub(r"[^A-Za-z0-9]+", "-", self.dataset.rsplit("/", 1)[-1]).strip("-")
        return f"{self.kind}-{self.arch}-{data}-{self.digest[:12]}"
