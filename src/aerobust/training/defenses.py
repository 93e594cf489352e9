"""The defenses the paper cites, trained into the run store: a ``DefenseSpec`` hashes to a
run like a ``TrainSpec``; ``train_defense`` trains the guarded classifier C first (the
standard loop, reused when stored), then the defense's recipe (``defense_recipes``), and
stores the whole defense as one classifier checkpoint (images to logits, plus the
reject logit for MagNet and PuVAE, see ``aerobust.rejection``).

Kinds: ``dae`` (the paper's AE trained to denoise), ``magnet``, ``puvae``, ``hgd`` and
``cascade``; their settings, defaults and reasons are in ``SETTINGS`` and in each
model's docstring.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from aerobust.data import Dataset
from aerobust.errors import UserError
from aerobust.metrics import classifier_scores
from aerobust.models import ConvAE, build_model
from aerobust.models.cascade import CascadeDAE
from aerobust.models.hgd import HGD
from aerobust.models.magnet import MagNet
from aerobust.models.puvae import PuVAE
from aerobust.rejection import rejected, rejects, threshold_at
from aerobust.training.defaults import data_family, default_spec
from aerobust.training.defense_recipes import PHASES, Phase, detector_scores, init_decoders
from aerobust.training.spec import TrainSpec, run_name, spec_digest
from aerobust.training.store import Run, RunStore
from aerobust.training.trainer import TrainingDiverged

# Every setting of every kind, with its default: the spec holds them all, resolved, so a
# run trained with the defaults and one given them explicitly are the same run.
SETTINGS: dict[str, dict[str, Any]] = {
    # std of the Gaussian noise to remove; the two DAEs are 0.1 and 0.3
    "dae": {"noise": 0.1},
    # MagNet's MNIST recipe: noise volume 0.1; each detector's false-positive rate 0.001
    # on clean data held out of training (a share ``held_out`` of the training set)
    "magnet": {"noise": 0.1, "fpr": 0.001, "held_out": 0.1},
    # loss weights on the per-image sums (our choice, see ``puvae_phases``); rejection at
    # a 1% false-positive rate on held-out clean data
    "puvae": {"rc": 1.0, "kl": 1.0, "ce": 10.0, "fpr": 0.01, "held_out": 0.1},
    # guide: "features" (FGD, C's last conv block) or "logits" (LGD); training
    # adversarials: PGD against C at eps up to ``eps`` (the paper's larger MNIST radius)
    "hgd": {"guide": "features", "eps": 0.3, "attack_steps": 10},
    "cascade": {"noise": 0.1},
}
GUIDES = ("features", "logits")
_MODELS: dict[str, type[nn.Module]] = {"magnet": MagNet, "puvae": PuVAE, "hgd": HGD,
                                       "cascade": CascadeDAE}
KINDS = tuple(SETTINGS)
_ARCHS = {"dae": "ae-classifier", "magnet": "magnet", "puvae": "puvae", "hgd": "hgd",
          "cascade": "cascade-dae"}
# Adam's learning rate: 1e-3 except MagNet's all-sigmoid autoencoders, which at 1e-3 sat
# at the mean image through 30 digits epochs (MSE 0.19 for the pair) and at 1e-2 reached
# 0.009 (measured on the bundled digits)
_LR = {"magnet": 1e-2}
# epochs per phase, per data family: the bundled digits are small and quick
_EPOCHS = {"digits": {"dae": 20, "magnet": 30, "puvae": 15, "hgd": 10, "cascade": 15},
           "mnist": {"dae": 10, "magnet": 20, "puvae": 20, "hgd": 5, "cascade": 10}}


@dataclass(frozen=True)
class DefenseSpec:
    """A defense, its data, the spec of the classifier C it guards (None for the
    cascade, which brings its own), its settings and its optimiser: all that determines
    the trained defense."""

    defense: str
    dataset: str
    data_checksum: str
    in_channels: int
    image_size: int
    num_classes: int
    classifier: dict[str, Any] | None
    settings: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        check_settings(self.defense, self.settings)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UserError(f"learning rate must be positive, got {self.lr}")
        if (self.classifier is None) != (self.defense == "cascade"):
            raise UserError(f"defense {self.defense}: "
                            + ("the cascade trains its own classifier" if self.classifier
                               else "needs the spec of the classifier it guards"))

    kind = "classifier"  # what the checkpoint computes: logits, like any classifier

    @property
    def arch(self) -> str:
        return _ARCHS[self.defense]

    @property
    def classifier_spec(self) -> TrainSpec | None:
        return None if self.classifier is None else TrainSpec.from_dict(self.classifier)

    @property
    def arch_kwargs(self) -> dict[str, Any]:
        """The registry's constructor arguments, every default written out (so the
        digest changes when a default does): C enters as ``{"arch", "kwargs"}``."""
        shape = {"in_channels": self.in_channels, "image_size": self.image_size}
        if self.defense == "dae":
            return {"autoencoder": {"arch": "conv-ae", "kwargs": {**_defaults(ConvAE), **shape}},
                    "classifier": self._guarded()}
        built = {**_defaults(_MODELS[self.defense]), **shape}
        if "num_classes" in built:
            built["num_classes"] = self.num_classes
        return built if self.classifier is None else {"classifier": self._guarded(), **built}

    def _guarded(self) -> dict[str, Any]:
        assert self.classifier is not None
        return {"arch": self.classifier["arch"], "kwargs": self.classifier["arch_kwargs"]}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DefenseSpec:
        return cls(**d)

    @property
    def digest(self) -> str:
        """Hash of the canonical JSON, the data by checksum only (as ``TrainSpec``)."""
        return spec_digest({**self.to_dict(), "arch_kwargs": self.arch_kwargs})

    @property
    def run_name(self) -> str:
        return run_name(f"defense-{self.defense}", self.dataset, self.digest)


def _defaults(cls: type[nn.Module]) -> dict[str, Any]:
    """A model class's constructor defaults (its classifier aside)."""
    return {name: p.default for name, p in inspect.signature(cls).parameters.items()
            if p.default is not inspect.Parameter.empty}


def check_settings(defense: str, s: dict[str, Any]) -> None:
    """A one-line ``UserError`` for an unknown kind, or a setting it lacks or refuses."""
    if defense not in SETTINGS:
        raise UserError(f"unknown defense {defense!r}; known: {', '.join(KINDS)}")
    unknown = sorted(set(s) - set(SETTINGS[defense]))
    if unknown:
        raise UserError(f"defense {defense} has no setting {', '.join(unknown)}; "
                        f"known: {', '.join(SETTINGS[defense])}")

    def number(name: str, low: float, high: float, low_open: bool = True) -> None:
        v = s.get(name)
        if v is None:
            return
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or not ((low < v) if low_open else (low <= v)) or v > high:
            raise UserError(f"defense {defense}: {name} must be a number in "
                            f"{'(' if low_open else '['}{low:g}, {high:g}], got {v!r}")

    number("noise", 0, 1)
    number("eps", 0, 1)
    number("held_out", 0, 0.5)
    number("fpr", 0, 0.5, low_open=False)
    for weight in ("rc", "kl", "ce"):
        number(weight, 0, math.inf, low_open=False)
    steps = s.get("attack_steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                              or steps < 1):
        raise UserError(f"defense {defense}: attack_steps must be an integer >= 1, "
                        f"got {steps!r}")
    if s.get("guide", "features") not in GUIDES:
        raise UserError(f"defense {defense}: guide must be one of {', '.join(GUIDES)}, "
                        f"got {s['guide']!r}")


def defense_spec(defense: str, dataset: Dataset, classifier: TrainSpec | None = None,
                 settings: dict[str, Any] | None = None, **overrides: Any) -> DefenseSpec:
    """The spec of ``defense`` on ``dataset`` guarding ``classifier`` (default: the
    standard LeNet5 spec, same seed); ``settings`` and ``overrides`` (not None) win."""
    family = data_family(dataset)
    if family not in _EPOCHS or dataset.image_size % 4:
        raise UserError(f"the defenses are built for grey images of a side divisible by 4 "
                        f"(MNIST, digits); {dataset.name} is {dataset.channels}x"
                        f"{dataset.image_size}x{dataset.image_size}")
    check_settings(defense, settings or {})
    opts: dict[str, Any] = {"epochs": _EPOCHS[family][defense], "lr": _LR.get(defense, 1e-3),
                            "batch_size": 64 if family == "digits" else 128, "seed": 0}
    opts.update({k: v for k, v in overrides.items() if v is not None})
    if defense != "cascade" and classifier is None:
        classifier = default_spec("lenet5", dataset, seed=opts["seed"])
    return DefenseSpec(
        defense=defense, dataset=dataset.name, data_checksum=dataset.checksum,
        in_channels=dataset.channels, image_size=dataset.image_size,
        num_classes=dataset.num_classes,
        classifier=None if defense == "cascade" else classifier.to_dict(),
        settings={**SETTINGS[defense], **(settings or {})}, **opts)


def train_defense(spec: DefenseSpec, dataset: Dataset, store: RunStore,
                  device: str | torch.device = "auto", progress: bool = True) -> Run:
    """The stored defense for ``spec``: C trained (or found) first, then the defense."""
    guarded = None
    if spec.classifier_spec is not None:
        guarded = store.train(spec.classifier_spec, dataset, device=device,
                              progress=progress).load()
    return store.train(spec, dataset, device=device, progress=progress,
                       fit_fn=functools.partial(fit_defense, classifier=guarded))


def train_stored(spec: TrainSpec | DefenseSpec, dataset: Dataset, store: RunStore,
                 device: str | torch.device = "auto", progress: bool = True) -> Run:
    """The stored run of either kind of spec, trained now if the store lacks it: callers
    that train whatever a plan names (the experiments, the cluster's tasks) need not
    know a defense's recipe from the standard loop."""
    if isinstance(spec, DefenseSpec):
        return train_defense(spec, dataset, store, device=device, progress=progress)
    return store.train(spec, dataset, device=device, progress=progress)


def held_out_split(spec: DefenseSpec, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices to train on and to set thresholds on (a seeded split of the training
    set; all of it to train on for a defense without a detector)."""
    share = spec.settings.get("held_out", 0.0)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(spec.seed + 7919))
    cut = n - round(share * n)
    return perm[:cut].sort().values, perm[cut:].sort().values


def _calibrate(spec: DefenseSpec, model: nn.Module, x_held: torch.Tensor) -> dict[str, float]:
    """Set each detector's threshold at the spec's false-positive rate on ``x_held``;
    returns the rate each then has there (what the test checks)."""
    model.eval()
    scores = detector_scores(model, x_held)
    thresholds = torch.tensor([threshold_at(col, spec.settings["fpr"]) for col in scores.T])
    buffer = model.thresholds if hasattr(model, "thresholds") else model.threshold
    buffer.copy_(thresholds.to(buffer))
    return {"held_out_false_positive_rate":
            float((scores > thresholds).any(dim=1).double().mean())}


def _evaluate(model: nn.Module, dataset: Dataset) -> dict[str, float]:
    model.eval()
    acc, _ = classifier_scores(model, dataset.x_test, dataset.y_test)
    row = {"test_accuracy": acc}
    if rejects(model):
        with torch.no_grad():
            device = next(model.parameters()).device
            logits = torch.cat([model(dataset.x_test[i : i + 512].to(device)).cpu()
                                for i in range(0, len(dataset.x_test), 512)])
        row["test_false_positive_rate"] = float(rejected(logits).double().mean())
    return row


def fit_defense(spec: DefenseSpec, dataset: Dataset, device: torch.device,
                classifier: nn.Module | None = None, state: dict[str, Any] | None = None,
                save_state: Callable[[dict[str, Any]], None] | None = None,
                progress: bool = True, on_epoch_end: Callable[[int], None] | None = None,
                ) -> tuple[nn.Module, list[dict[str, float]]]:
    """Run the recipe's phases, ``spec.epochs`` epochs each (Adam, cosine schedule per
    phase), resumable at any finished epoch; the model comes back in eval mode, its
    detectors' thresholds set on the held-out images and its test figures in the last
    row of the history."""
    torch.manual_seed(spec.seed)
    model = build_model(spec.arch, **spec.arch_kwargs)
    if classifier is not None:
        model.classifier.load_state_dict(classifier.state_dict())
        model.classifier.requires_grad_(False)
    init_decoders(model, float(dataset.x_train.mean()))
    model.to(device)
    phases = PHASES[spec.defense](model, spec.settings)
    train_idx, held_idx = held_out_split(spec, len(dataset.x_train))
    x, y = dataset.x_train[train_idx], dataset.y_train[train_idx]
    gen = torch.Generator().manual_seed(spec.seed)
    history: list[dict[str, float]] = []
    done = 0
    if state is not None:
        model.load_state_dict(state["model"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, done = list(state["history"]), int(state["epoch"])
    total = len(phases) * spec.epochs
    per_epoch = -(-len(x) // spec.batch_size)
    bar = tqdm(total=total * per_epoch, initial=done * per_epoch, disable=not progress,
               desc=spec.run_name, unit="batch", dynamic_ncols=True, leave=False)
    try:
        for p, phase in enumerate(phases):
            if done >= (p + 1) * spec.epochs:
                continue
            params = [q for m in phase.modules for q in m.parameters()]
            opt = torch.optim.Adam(params, lr=spec.lr)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=spec.epochs)
            if state is not None and done > p * spec.epochs:  # resuming inside this phase
                opt.load_state_dict(state["optimizer"])
                sched.load_state_dict(state["scheduler"])
            while done < (p + 1) * spec.epochs:
                t0 = time.perf_counter()
                loss = _epoch(spec, model, phase, opt, x, y, gen, device, done, bar)
                sched.step()
                done += 1
                row = {"epoch": done, "phase": phase.name, "train_loss": loss}
                if done == total:  # thresholds and test figures once, at the end: PuVAE's
                    # forward is 10 reconstructions, a large share of an epoch's time
                    if rejects(model):
                        row.update(_calibrate(spec, model, dataset.x_train[held_idx]))
                    row.update(_evaluate(model, dataset))
                row["seconds"] = time.perf_counter() - t0
                history.append(row)
                if save_state is not None:
                    save_state({"epoch": done, "history": history,
                                "model": {k: v.detach().cpu()
                                          for k, v in model.state_dict().items()},
                                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                "generator": gen.get_state(),
                                "torch_rng": torch.get_rng_state()})
                if on_epoch_end is not None:
                    on_epoch_end(done)
    finally:
        bar.close()
    return model.eval(), history


def _epoch(spec: DefenseSpec, model: nn.Module, phase: Phase, opt: torch.optim.Optimizer,
           x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, device: torch.device,
           epoch: int, bar: Any) -> float:
    """One epoch of ``phase``: only its modules in train mode (C and finished stages
    stay in eval mode); the mean loss per sample."""
    model.eval()
    for module in phase.modules:
        module.train()
    perm = torch.randperm(len(x), generator=gen)
    total = 0.0
    for b in range(0, len(x), spec.batch_size):
        idx = perm[b : b + spec.batch_size]
        xb, yb = x[idx].to(device), y[idx].to(device)
        loss = phase.step(xb, yb, (spec.seed * 10_000 + epoch) * 100_000 + b, gen)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"{spec.run_name}: loss became {float(loss)} in phase "
                                   f"{phase.name}, epoch {epoch + 1}; try a lower learning "
                                   f"rate (now {spec.lr})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
        bar.update()
    return total / len(x)
