"""Training defaults per model and data family, used where the user names none."""

from __future__ import annotations

from typing import Any

from aerobust.data import Dataset
from aerobust.models import model_kind
from aerobust.training.spec import TrainSpec


def data_family(dataset: Dataset) -> str:
    """digits, mnist (any other grey data) or cifar (colour data): picks defaults."""
    if dataset.name == "digits":
        return "digits"
    return "cifar" if dataset.channels == 3 else "mnist"


# (family, kind) -> optimizer settings. Small digits needs many short epochs; CIFAR-10
# uses the usual SGD recipe for VGG/ResNet with crop+flip augmentation. A cosine
# schedule everywhere, so the last epoch (the one kept) is a settled one.
_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("digits", "classifier"): dict(optimizer="adam", lr=2e-3, epochs=30, batch_size=64),
    ("digits", "autoencoder"): dict(optimizer="adam", lr=2e-3, epochs=20, batch_size=64),
    ("mnist", "classifier"): dict(optimizer="adam", lr=1e-3, epochs=15, batch_size=128),
    ("mnist", "autoencoder"): dict(optimizer="adam", lr=1e-3, epochs=10, batch_size=128),
    ("cifar", "classifier"): dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4,
                                  epochs=60, batch_size=128, augment=True),
    ("cifar", "autoencoder"): dict(optimizer="adam", lr=1e-3, epochs=30, batch_size=128),
}


# Madry PGD adversarial training per data family, [0,1] pixel units. Grey data ramps eps
# up over the first 5 epochs: at 0.3 from the start LeNet5 stalls at chance (see
# ``adversarial_batch``; docs/design.md#adversarial-training-fig-4).
ADVERSARIAL_DEFAULTS: dict[str, dict[str, float]] = {
    "digits": {"eps": 0.3, "steps": 40, "step_size": 0.01, "ramp_epochs": 5},
    "mnist": {"eps": 0.3, "steps": 40, "step_size": 0.01, "ramp_epochs": 5},
    "cifar": {"eps": 8 / 255, "steps": 7, "step_size": 2 / 255, "ramp_epochs": 0},
}


def adversarial_settings(dataset: Dataset, **overrides: float | None) -> dict[str, float]:
    """The family's PGD-training settings with the given (non-None) ones replaced."""
    settings = dict(ADVERSARIAL_DEFAULTS[data_family(dataset)])
    settings.update({k: v for k, v in overrides.items() if v is not None})
    settings["steps"] = int(settings["steps"])
    return settings


def default_spec(arch: str, dataset: Dataset, **overrides: Any) -> TrainSpec:
    """The spec for training ``arch`` on ``dataset``; ``overrides`` (not None) win."""
    kind = model_kind(arch)
    arch_kwargs: dict[str, Any] = {"in_channels": dataset.channels,
                                   "image_size": dataset.image_size}
    if kind == "classifier":
        arch_kwargs["num_classes"] = dataset.num_classes
    settings: dict[str, Any] = {"schedule": "cosine", **_DEFAULTS[(data_family(dataset), kind)]}
    settings["loss"] = "ce" if kind == "classifier" else "mse"
    settings.update({k: v for k, v in overrides.items() if v is not None})
    settings["arch_kwargs"] = {**arch_kwargs, **settings.get("arch_kwargs", {})}
    return TrainSpec(kind=kind, arch=arch, dataset=dataset.name,
                     data_checksum=dataset.checksum, **settings)
