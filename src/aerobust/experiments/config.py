"""The experiments' settings: one dataclass whose fields carry their own help, units and
range (the CLI's options are generated from them), and one profile per data family
holding every default the paper or docs/design.md fixes. A default is written here once.

A user's config holds only what they set (None: not set); ``resolve`` fills the rest
from the data family's profile, so a resolved config, and every row made under it,
holds the value that ran, never None.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from aerobust.audit.ladder import BUDGETS
from aerobust.data import Dataset
from aerobust.errors import UserError
from aerobust.models import CLASSIFIERS
from aerobust.training import data_family, default_spec
from aerobust.training.losses import loss_kwargs

EPS_UNITS = "0-255 pixel units"


def _opt(help: str, group: str = "experiments", *, low: float | None = None,
         high: float | None = None, choices: tuple[Any, ...] | None = None,
         integer: bool = False, flag: str | None = None) -> Any:
    """A config field, unset (None) by default, with what the CLI and the checks need."""
    return field(default=None, metadata={
        "help": help, "group": group, "low": low, "high": high, "choices": choices,
        "integer": integer, "flag": flag})


GROUPS = {"experiments": "experiment settings",
          "masking": "gradient-masking checks (table2, figure2)",
          "robust": "robust features (table3, figure4)",
          "audit": "the paper, audited (audit)"}


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything besides code that an experiment's numbers depend on.

    Tuples hold several values (epsilons, Table 3's settings); epsilons are in 0-255
    pixel units everywhere, as in the paper."""

    dataset: str = "digits"
    data_dir: str | None = None
    classifier: str | None = _opt("classifier architecture", choices=CLASSIFIERS)
    classifier_epochs: int | None = _opt("training epochs of every classifier", low=1,
                                         integer=True)
    ae_epochs: int | None = _opt("training epochs of every autoencoder", low=1, integer=True)
    eps: tuple[float, ...] | None = _opt(
        f"epsilons of Tables 1 and 2 and the audit ({EPS_UNITS})", low=0, high=255)
    n_eval: int | None = _opt("test images (the first N; FGSM, PGD, DeepFool, Table 3, 4, "
                              "Fig. 4)", low=1, integer=True, flag="--n")
    n_cw: int | None = _opt("test images for CW", low=1, integer=True)
    cw_steps: int | None = _opt("CW iterations per binary-search step", low=1, integer=True)
    cw_binary_steps: int | None = _opt("CW binary-search steps over c", low=1, integer=True)
    pgd_steps: int | None = _opt("PGD steps (white-box)", low=1, integer=True)
    pgd_restarts: int | None = _opt("PGD restarts", low=1, integer=True)
    deepfool_steps: int | None = _opt("DeepFool iterations", low=1, integer=True)
    batch_size: int | None = _opt("images per attacked batch", low=1, integer=True)
    seed: int | None = _opt("the first seed (training and attacks)", low=0, integer=True)
    seeds: int | None = _opt("seeds per model variant: seed, seed+1, ...; tables show mean "
                             "+- std over them", low=1, integer=True)
    # The costliest cells may run fewer seeds than the rest: the report marks each such
    # cell "(n=K)" and its settings say which and why; nothing shrinks silently.
    cw_seeds: int | None = _opt("seeds that run CW, the costliest attack: the first N of "
                                "--seeds (default all)", low=1, integer=True)
    # Gradient-masking checks (Table 2, Fig. 2).
    substitute_arch: str | None = _opt("Table 2(a)'s substitute of another architecture",
                                       "masking", choices=CLASSIFIERS)
    substitute_labels: str | None = _opt(
        "train substitutes on the true labels or on the target's predictions", "masking",
        choices=("true", "target"))
    substitute_epochs: int | None = _opt("training epochs of the substitute classifiers",
                                         "masking", low=1, integer=True)
    substitute_ae_epochs: int | None = _opt("training epochs of the substitutes' AEs",
                                            "masking", low=1, integer=True)
    transfer_keep: str | None = _opt("PGD iterate transferred", "masking",
                                     choices=("first", "last"))
    temperature: float | None = _opt("T of C+T, in training only", "masking", low=0)
    gce_alpha: float | None = _opt("guiding exponent alpha of C+GCE", "masking", low=0)
    eps_sweep: tuple[float, ...] | None = _opt(f"Fig. 2 and 4 epsilons ({EPS_UNITS})",
                                               "masking", low=0, high=255)
    masking_n: int | None = _opt("test images of Table 2 and Fig. 2", "masking", low=1,
                                 integer=True)
    masking_pgd_steps: int | None = _opt("PGD steps of Table 2 and Fig. 2", "masking", low=1,
                                         integer=True)
    # Robust features (Table 3, Fig. 4).
    latent_eps: tuple[float, ...] | None = _opt(f"Table 3's epsilons ({EPS_UNITS})", "robust",
                                                low=0, high=255)
    lambdas: tuple[float, ...] | None = _opt("Table 3(a): weights of the reconstruction loss",
                                             "robust", low=0)
    gammas: tuple[int, ...] | None = _opt("Table 3(b): reconstruction steps per CE step",
                                          "robust", low=0, integer=True)
    sweep_attack: str | None = _opt("Fig. 4's attack over the eps sweep", "robust",
                                    choices=("fgsm", "pgd"))
    # The paper, audited (experiment "audit").
    audit_budget: str | None = _opt("attack-ladder budget", "audit", choices=tuple(BUDGETS))
    audit_n: int | None = _opt("test images audited (at most --n)", "audit", low=1,
                               integer=True)
    audit_seeds: int | None = _opt("seeds audited: the first N of --seeds (default all)",
                                   "audit", low=1, integer=True)
    audit_l2_eps: tuple[float, ...] | None = _opt(
        "L2 radii at which C and AE-C are also audited, in the [0,1] pixel scale of "
        "AutoAttack (around the CW and DeepFool median L2)", "audit", low=0)

    def __post_init__(self) -> None:
        for f in option_fields():
            value = getattr(self, f.name)
            if value is not None:
                for v in value if isinstance(value, tuple) else (value,):
                    _check(f, v)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def given(self) -> dict[str, Any]:
        """The settings that are set (not None)."""
        return {k: v for k, v in self.to_dict().items() if v is not None}


def option_fields() -> list[dataclasses.Field]:
    """The fields a user sets through experiment options (all but the data's)."""
    return [f for f in dataclasses.fields(ExperimentConfig) if "help" in f.metadata]


def _check(f: dataclasses.Field, value: Any) -> None:
    meta = f.metadata
    if meta["choices"] is not None:
        if value not in meta["choices"]:
            raise UserError(f"{f.name} must be one of {', '.join(map(str, meta['choices']))}, "
                            f"got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value):
        raise UserError(f"{f.name} must be a number, got {value!r}")
    if meta["integer"] and value != int(value):
        raise UserError(f"{f.name} must be a whole number, got {value!r}")
    low, high = meta["low"], meta["high"]
    if f.name == "temperature" and value <= 0:
        raise UserError(f"temperature must be > 0, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        where = (f"outside {low:g}..{high:g}" if high is not None
                 else f"below the minimum {low:g}")
        units = f" ({EPS_UNITS})" if "eps" in f.name else ""
        raise UserError(f"{f.name} {value!r} is {where}{units}")


# Every default the paper or docs/design.md fixes, per data family. ``digits`` (the bundled
# 8x8 digits, upscaled) is the grey family at the quick preset's size: CW 5 x 100
# (docs/design.md#presets), the masking checks on 100 images with PGD-10 and the
# quick audit on 100, so the whole pipeline runs in minutes on a CPU.
_COMMON: dict[str, Any] = {
    "n_cw": 1000, "cw_steps": 1000, "cw_binary_steps": 9, "pgd_steps": 40, "pgd_restarts": 1,
    "deepfool_steps": 50, "batch_size": 256, "seed": 0, "seeds": 1,
    "substitute_labels": "true", "transfer_keep": "last",
    # the paper's T and alpha, as the losses define them
    "temperature": loss_kwargs("temperature")["temperature"],
    "gce_alpha": loss_kwargs("gce")["alpha"], "latent_eps": (20.0, 50.0),
    "lambdas": (0.0, 1.0, 4.0), "gammas": (0, 1, 2), "sweep_attack": "pgd",
    "audit_budget": "standard", "audit_n": 1000,
}
# The audit's L2 radii span the median L2 of CW and DeepFool (Table 1): on MNIST (the
# 8k/2k run) DeepFool 1.5-1.9 and CW 2.1-2.4, on digits both 1.0-1.6; on CIFAR-10
# RobustBench's L2 radius 0.5.
GREY: dict[str, Any] = {
    **_COMMON, "classifier": "lenet5", "eps": (20.0, 80.0), "audit_l2_eps": (1.5, 2.0, 2.5),
    "eps_sweep": (0.0, 10.0, 20.0, 30.0, 40.0, 60.0, 80.0),
    "substitute_arch": "lenet-substitute",  # Table 2(a): "LeNet-like" (docs/design.md#models)
}
PROFILES: dict[str, dict[str, Any]] = {
    "mnist": GREY,
    "digits": {**GREY, "cw_steps": 100, "cw_binary_steps": 5, "masking_n": 100,
               "masking_pgd_steps": 10, "audit_budget": "quick", "audit_n": 100,
               "audit_l2_eps": (1.0, 1.5, 2.0)},
    "cifar": {**_COMMON, "classifier": "vgg16", "eps": (5.0, 10.0), "audit_l2_eps": (0.5,),
              "eps_sweep": (0.0, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0),
              "substitute_arch": "resnet110"},  # Table 2(a), CIFAR-10 (docs/design.md#models)
}
PAPER_DATASET = {"digits": "mnist", "mnist": "mnist", "cifar": "cifar10"}


def profile_default(name: str) -> str:
    """A field's default as the CLI's help says it: one value, or one per family."""
    values = {family: PROFILES[family].get(name) for family in PROFILES}
    shown = {family: _text(v) for family, v in values.items() if v is not None}
    if name in ("n_eval",):
        return "all test images"
    if name == "masking_n":
        return f"{shown['digits']} on digits, else --n"
    if name == "masking_pgd_steps":
        return f"{shown['digits']} on digits, else --pgd-steps"
    if name in ("classifier_epochs", "ae_epochs"):
        return "the data family's training default"
    if name in ("substitute_epochs", "substitute_ae_epochs"):
        return "as many as the targets"
    if name in ("cw_seeds", "audit_seeds"):
        return "all of --seeds"
    if len(set(shown.values())) == 1:
        return next(iter(shown.values()))
    return "; ".join(f"{v} {family}" for family, v in shown.items())


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(_text(v) for v in value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def resolve(config: ExperimentConfig, dataset: Dataset) -> ExperimentConfig:
    """``config`` with every unset setting filled from ``dataset``'s family profile: the
    one place a default is decided."""
    family = data_family(dataset)
    values = {**PROFILES[family], **config.given()}
    values["n_eval"] = min(values.get("n_eval") or len(dataset.x_test), len(dataset.x_test))
    values["n_cw"] = min(values["n_cw"], len(dataset.x_test))
    values.setdefault("masking_n", values["n_eval"])
    values["masking_n"] = min(values["masking_n"], len(dataset.x_test))
    values.setdefault("masking_pgd_steps", values["pgd_steps"])
    values["audit_n"] = min(values["audit_n"], values["n_eval"])
    for name in ("cw_seeds", "audit_seeds"):
        values[name] = min(values.get(name) or values["seeds"], values["seeds"])
    for kind, arch in (("classifier", values["classifier"]), ("ae", "conv-ae")):
        values.setdefault(f"{kind}_epochs", default_spec(arch, dataset).epochs)
    values.setdefault("substitute_epochs", values["classifier_epochs"])
    values.setdefault("substitute_ae_epochs", values["ae_epochs"])
    values["gammas"] = tuple(int(g) for g in values["gammas"])
    return ExperimentConfig(**values)
