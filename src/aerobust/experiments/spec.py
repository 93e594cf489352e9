"""Cells as data: what one table or figure cell computes, as a frozen spec with a cache key.

A ``Cell`` names the model (the networks to train and how they compose), the task (clean
accuracy, a white-box attack, a transfer, the gradient amplitude or an audit) with fully
resolved parameters, the seed and the test images. ``compute`` (``experiments.compute``)
turns it into a row and nothing else does, so the cells of a run can be listed, counted,
filtered and handed to other processes before anything runs.

A cell's key hashes its spec, the data checksum and the version of the code that computes
it (the package version and a digest of the sources of its attack, the trainer, and the
metrics or the audit), so a changed attack recomputes exactly the cells that use it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aerobust
from aerobust.attacks import ATTACKS

_SRC = Path(aerobust.__file__).parent


@dataclass(frozen=True)
class Net:
    """One network to train: architecture, seed, epochs and the training options that
    differ from the data family's defaults (loss, joint method, adversarial training).
    ``labels_from``: train on that model's predictions instead of the true labels."""

    arch: str
    seed: int
    epochs: int
    options: dict[str, Any] = field(default_factory=dict)
    labels_from: Model | None = None


@dataclass(frozen=True)
class Model:
    """The attacked model: a classifier, with an autoencoder in front when given."""

    classifier: Net
    autoencoder: Net | None = None


@dataclass(frozen=True)
class Cell:
    """One result cell. ``coords`` are the row's coordinates in its table (variant,
    attack, eps, seed, ...); ``task`` and ``params`` what to compute on ``model`` (with
    ``substitute`` for a transfer); ``info`` is copied into the row but not hashed (the
    paper's reference value)."""

    experiment: str
    coords: dict[str, Any]
    task: str  # clean | attack | transfer | gradient | audit
    model: Model
    params: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    substitute: Model | None = None  # a transfer's: the model the attack runs on

    def spec(self) -> dict[str, Any]:
        """Everything that determines the row, as plain JSON values (a substitute among
        the task's parameters)."""
        params = self.params if self.substitute is None else {
            **self.params, "substitute": dataclasses.asdict(self.substitute)}
        return {"experiment": self.experiment, "coords": self.coords, "task": self.task,
                "model": dataclasses.asdict(self.model), "params": params}

    def components(self) -> list[str]:
        """The code a cell's numbers depend on, named for ``code_version``."""
        used = ["trainer"]
        attack = self.params.get("attack")
        if attack is not None:
            used.append(f"attack:{attack['name']}")
        used.append({"audit": "audit", "transfer": "transfer"}.get(self.task, "metrics"))
        return used

    def code(self) -> dict[str, str]:
        """The version of each piece of code the cell depends on."""
        return {c: code_version(c) for c in self.components()}

    def key(self, data_checksum: str) -> str:
        blob = json.dumps({"spec": self.spec(), "data": data_checksum, "code": self.code()},
                          sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _sources(component: str) -> list[Path]:
    attacks = _SRC / "attacks"
    shared = [attacks / "base.py", attacks / "losses.py", attacks / "evaluate.py",
              *sorted(attacks.glob("runner.py")), attacks / "model.py", attacks / "result.py",
              attacks / "checks.py"]
    if component == "trainer":
        return sorted([*(_SRC / "training").glob("*.py"), *(_SRC / "models").glob("*.py")])
    if component.startswith("attack:"):
        module = ATTACKS[component.split(":", 1)[1]].__module__.rsplit(".", 1)[-1]
        return [attacks / f"{module}.py", *shared]
    if component == "transfer":
        return [attacks / "transfer.py", *shared]
    if component == "audit":
        return sorted([*(_SRC / "audit").glob("*.py"), *attacks.glob("*.py"), _SRC / "stats.py"])
    if component == "metrics":
        return [_SRC / "metrics.py"]
    raise ValueError(f"unknown code component {component!r}")


@functools.cache
def code_version(component: str) -> str:
    """``<package version>+<digest of the component's sources>``: bumps whenever a file
    that computes the component's numbers changes."""
    digest = hashlib.sha256()
    for path in _sources(component):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{aerobust.__version__}+{digest.hexdigest()[:12]}"
