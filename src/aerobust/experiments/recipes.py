"""The models and attacks the paper's experiments share, as specs (``Net``, ``Model``,
attack dicts) made from a resolved config: C, AE-C, the masking defenses, advC, the
substitutes, and each attack with its parameters resolved. No experiment imports
another; they all build their cells from here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aerobust import attacks
from aerobust.data import Dataset
from aerobust.experiments.config import PAPER_DATASET, ExperimentConfig
from aerobust.experiments.spec import Model, Net
from aerobust.training import adversarial_settings, data_family
from aerobust.training.losses import loss_kwargs


@dataclass(frozen=True)
class Setup:
    """A resolved config and the data it runs on: all a plan needs."""

    config: ExperimentConfig
    dataset: Dataset

    @property
    def family(self) -> str:
        return data_family(self.dataset)

    @property
    def paper_dataset(self) -> str:
        return PAPER_DATASET[self.family]

    def seeds(self) -> Iterator[int]:
        """The seed axis: seed, seed + 1, ..., one per replicate of every model."""
        return iter(range(self.config.seed, self.config.seed + self.config.seeds))


def classifier(setup: Setup, seed: int, arch: str | None = None, **options: Any) -> Net:
    return Net(arch or setup.config.classifier, seed, setup.config.classifier_epochs, options)


def autoencoder(setup: Setup, seed: int) -> Net:
    return Net("conv-ae", seed, setup.config.ae_epochs)


def defended(setup: Setup, seed: int, defense: str) -> Net:
    """The classifier trained with plain CE (""), temperature ("T"), GCE ("GCE") or PGD
    adversarial training ("adv")."""
    c = setup.config
    if defense == "T":
        return classifier(setup, seed, loss="temperature",
                          loss_kwargs=loss_kwargs("temperature", temperature=c.temperature))
    if defense == "GCE":
        return classifier(setup, seed, loss="gce",
                          loss_kwargs=loss_kwargs("gce", alpha=c.gce_alpha))
    if defense == "adv":
        return classifier(setup, seed, adversarial=adversarial_settings(setup.dataset))
    return classifier(setup, seed)


# The paper's model variants: name -> (classifier's defense, AE in front)
VARIANTS: dict[str, tuple[str, bool]] = {
    "C": ("", False), "AE-C": ("", True), "C+T": ("T", False), "(AE-C)+T": ("T", True),
    "C+GCE": ("GCE", False), "(AE-C)+GCE": ("GCE", True), "advC": ("adv", False),
    "AE-advC": ("adv", True)}


def variant(setup: Setup, name: str, seed: int) -> Model:
    """A variant of the paper; every AE variant puts the one AE of its seed (trained
    alone, on reconstruction) in front, composed without fine-tuning."""
    defense, with_ae = VARIANTS[name]
    return Model(defended(setup, seed, defense), autoencoder(setup, seed) if with_ae else None)


def replicates(setup: Setup, names: tuple[str, ...],
               seeds: int | None = None) -> Iterator[tuple[int, str, Model]]:
    """(seed, variant name, model) for every seed (the first ``seeds`` of them when
    given) and variant: the seed axis outermost, so one seed's models are all used
    before the next seed's train."""
    for seed in list(setup.seeds())[:seeds]:
        for name in names:
            yield seed, name, variant(setup, name, seed)


def substitute(setup: Setup, kind: str, target: Model, seed: int) -> Model:
    """A substitute for ``target``, never the same networks: ``kind="different"`` has the
    profile's substitute architecture, ``"same"`` the target's classifier architecture.
    Both train from ``seed + 1`` with plain CE; an AE target's substitute puts an AE
    trained from ``seed + 1`` in front. With ``substitute_labels="target"`` the
    classifier learns the target's predictions."""
    c = setup.config
    arch = c.substitute_arch if kind == "different" else c.classifier
    labels = target if c.substitute_labels == "target" else None
    clf = Net(arch, seed + 1, c.substitute_epochs, {}, labels)
    ae = None if target.autoencoder is None else Net("conv-ae", seed + 1, c.substitute_ae_epochs)
    return Model(clf, ae)


def attack(setup: Setup, name: str, eps: float | None, seed: int, *,
           steps: int | None = None, keep: str = "first") -> dict[str, Any]:
    """An attack with every parameter resolved (the attack's own defaults included), as
    the cell records it; ``eps`` in 0-255 units, None for the minimum-norm attacks."""
    c = setup.config
    if name == "fgsm":
        made = attacks.get("fgsm", eps=eps / 255)
    elif name == "pgd":
        made = attacks.get("pgd", eps=eps / 255, steps=steps or c.pgd_steps,
                           restarts=c.pgd_restarts, seed=seed, keep=keep)
    elif name == "cw":
        made = attacks.get("cw", confidence=0.0, steps=c.cw_steps, binary_steps=c.cw_binary_steps)
    else:
        made = attacks.get("deepfool", steps=c.deepfool_steps)
    return {"name": made.name, "params": made.params()}


# method -> (the training option it sets, the symbol the paper uses)
LATENT_METHODS = {"regularization": ("lam", "lambda"), "alternating": ("gamma", "gamma")}


def latent_settings(setup: Setup) -> list[tuple[str, float]]:
    """(method, value) cells in the paper's column order."""
    c = setup.config
    return ([("regularization", v) for v in c.lambdas]
            + [("alternating", v) for v in c.gammas])


def latent(setup: Setup, method: str, value: float, seed: int) -> Net:
    """The latent classifier of one setting. lambda = 0 and gamma = 0 are both plain CE
    training of the same network (as the paper's equal first columns show): one net."""
    options = {} if value == 0 else {
        "method": method,
        LATENT_METHODS[method][0]: int(value) if method == "alternating" else float(value)}
    return Net("latent-classifier", seed, setup.config.classifier_epochs, options)
