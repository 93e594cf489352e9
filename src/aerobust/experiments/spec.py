"""Cells as data: what one table or figure cell computes, as a frozen spec with a cache key.

A ``Cell`` names the model (the networks to train and how they compose), the task (clean
accuracy, a white-box attack, a transfer, the gradient amplitude or an audit) with fully
resolved parameters, the seed and the test images. ``compute`` (``experiments.compute``)
turns it into a row and nothing else does, so the cells of a run can be listed, counted,
filtered and handed to other processes before anything runs.

A cell's key hashes its spec, the data checksum and the version of the code that computes
it: the package version and, per component (the training of each architecture it uses,
its attack, its scoring), a digest of the modules that component imports
(``aerobust.code_version``). A changed attack recomputes exactly the cells that use it,
and a new model or a moved helper nothing that does not import it.
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
from aerobust.code_version import ROOT, closure, source_digest
from aerobust.models import MODELS
from aerobust.models.registry import DEFENSES


@dataclass(frozen=True)
class Net:
    """One network to train: architecture, seed, epochs and the training options that
    differ from the data family's defaults (loss, joint method, adversarial training).
    ``labels_from``: train on that model's predictions instead of the true labels.

    A defense of ``training.defenses`` is a net whose options name its kind
    (``"defense"``), its ``"settings"`` and, as a plain net dict, the classifier it
    guards (``"guards"``): options, not new fields, so no other cell's spec changes."""

    arch: str
    seed: int
    epochs: int
    options: dict[str, Any] = field(default_factory=dict)
    labels_from: Model | None = None

    @property
    def defense(self) -> str | None:
        return self.options.get("defense")

    def guarded(self) -> Net | None:
        """The classifier a defense guards (None for a plain net, or the cascade)."""
        guards = self.options.get("guards")
        return None if guards is None else Net(**guards)


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

    def nets(self) -> list[Net]:
        """Every network the cell's numbers come from: the attacked model's, a
        substitute's, and those whose predictions labelled a substitute."""
        found: list[Net] = []

        def add(net: Net | None) -> None:
            if net is None or net in found:
                return
            found.append(net)
            add(net.guarded())
            if net.labels_from is not None:
                add(net.labels_from.classifier)
                add(net.labels_from.autoencoder)

        for model in (self.model, self.substitute):
            if model is not None:
                add(model.classifier)
                add(model.autoencoder)
        return found

    def components(self) -> list[str]:
        """The code a cell's numbers depend on, named for ``code_version``: the training
        of each architecture it uses, its attack, and how its task is scored."""
        used = sorted({f"defense:{net.defense}" if net.defense else f"train:{net.arch}"
                       for net in self.nets()})
        attack = self.params.get("attack")
        if attack is not None:
            used.append(f"attack:{attack['name']}")
        used.append({"audit": "audit", "transfer": "transfer",
                     "gradient-measure": "gradient-measure"}.get(self.task, "metrics"))
        return [*used, "compute"]

    def code(self) -> dict[str, str]:
        """The version of each piece of code the cell depends on."""
        return {c: code_version(c) for c in self.components()}

    def key(self, data_checksum: str) -> str:
        blob = json.dumps({"spec": self.spec(), "data": data_checksum, "code": self.code()},
                          sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


# Training a network: the loop, and the defaults that fill its TrainSpec (optimizer,
# learning rate, batch size: not in the cell's spec, but they make the model).
TRAINING = ("aerobust.training.trainer", "aerobust.training.defaults")
DEFENSE_TRAINING = "aerobust.training.defenses"  # the defenses' own recipes
COMPUTE = "aerobust.experiments.compute"
MEASURES = "aerobust.experiments.measures"


def _entries(component: str) -> list[str]:
    """The modules whose import closure computes ``component``."""
    kind, _, name = component.partition(":")
    if kind == "defense":  # the recipes import every defense model
        return [DEFENSE_TRAINING, *TRAINING]
    if kind == "train":
        constructor = MODELS[name][1]
        built = getattr(constructor, "func", None) or getattr(constructor, "__wrapped__",
                                                               constructor)
        recipe = [DEFENSE_TRAINING] if name in DEFENSES else []
        return [built.__module__, *TRAINING, *recipe]
    if kind == "attack":
        return [ATTACKS[name].__module__]
    modules = {"transfer": "aerobust.attacks.transfer", "audit": "aerobust.audit.core",
               "metrics": "aerobust.metrics", "gradient-measure": "aerobust.gradient_measures"}
    if component not in modules:
        raise ValueError(f"unknown code component {component!r}")
    return [modules[component]]


def component_digest(component: str, root: Path = ROOT) -> str:
    """Digest of the code that computes ``component``, read from the package at ``root``.
    ``compute`` is the one function that turns every cell into its row: its own source,
    not what it imports (each task's code is a component of its own)."""
    if component == "compute":
        return source_digest([COMPUTE], root)
    modules = closure(_entries(component), root)
    if component == "gradient-measure":  # its row is made beside compute, in MEASURES
        modules = [*modules, MEASURES]
    return source_digest(modules, root)


@functools.cache
def code_version(component: str) -> str:
    """``<package version>+<digest>``: bumps whenever code that computes the component's
    numbers changes, and only then (``aerobust.code_version``)."""
    return f"{aerobust.__version__}+{component_digest(component)}"
