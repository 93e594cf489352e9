"""``reproduce`` presets: which datasets ("parts") to run, each with the experiment
settings the preset fixes. A user's own options win over a preset's."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aerobust.errors import UserError

# The quick preset runs every experiment on the bundled digits in minutes on two CPU
# cores: fewer epochs and test images than the paper, CW 5 x 100, and the masking
# checks on 100 images with PGD-10 (the digits family defaults; why:
# docs/design.md#presets). Measured times are in docs/reproduce.md#presets.
QUICK: dict[str, Any] = {
    "classifier_epochs": 15,
    "ae_epochs": 15,
    "n_eval": 200,
    "n_cw": 100,
}


@dataclass(frozen=True)
class Part:
    """One dataset of a preset: its output folder name, the dataset, fixed settings."""

    name: str
    dataset: str
    settings: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, tuple[Part, ...]] = {
    "quick": (Part("digits", "digits", QUICK),),
    "mnist": (Part("mnist", "mnist"),),
    "cifar10": (Part("cifar10", "cifar10"),),
}
PRESETS["paper"] = PRESETS["mnist"] + PRESETS["cifar10"]


def part_name(dataset: str) -> str:
    """A folder name for a dataset: its own name, or an npz file's stem."""
    if dataset.startswith("npz:"):
        dataset = Path(dataset[4:]).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "-", dataset).strip("-") or "data"


def parts(preset: str, dataset: str | None = None) -> list[Part]:
    """The preset's parts; ``dataset`` replaces the data of a one-dataset preset while
    keeping its settings (``--preset mnist --dataset npz:PATH``)."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    chosen = PRESETS[preset]
    if dataset is None:
        return list(chosen)
    if len(chosen) > 1:
        raise UserError(f"--dataset replaces the data of a one-dataset preset; "
                        f"{preset} runs {len(chosen)} ({', '.join(p.dataset for p in chosen)})")
    return [Part(part_name(dataset), dataset, chosen[0].settings)]
