"""Model names -> constructors, so specs and checkpoints name architectures as strings."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import nn

from aerobust.errors import UserError
from aerobust.models.autoencoder import ConvAE
from aerobust.models.cascade import CascadeDAE
from aerobust.models.composite import AEClassifier, LatentClassifier
from aerobust.models.hgd import HGD
from aerobust.models.lenet import LeNet5, LeNetSubstitute
from aerobust.models.magnet import MagNet
from aerobust.models.puvae import PuVAE
from aerobust.models.resnet import CifarResNet
from aerobust.models.variants import ClippedLinearAE, LeNet5Original, NormalizedLeNet5
from aerobust.models.vgg import VGG16


def _ae_classifier(autoencoder: dict[str, Any], classifier: dict[str, Any]) -> nn.Module:
    return AEClassifier(
        build_model(autoencoder["arch"], **autoencoder.get("kwargs", {})),
        build_model(classifier["arch"], **classifier.get("kwargs", {})),
    )


def _guarding(defense: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """A defense's constructor taking its classifier as ``{"arch", "kwargs"}``, like the
    autoencoder and classifier of an ``ae-classifier``."""

    def build(classifier: dict[str, Any], **kwargs: Any) -> nn.Module:
        return defense(build_model(classifier["arch"], **classifier.get("kwargs", {})),
                       **kwargs)

    build.__wrapped__ = defense  # type: ignore[attr-defined]  # the code a key names
    return build


# name -> (kind, constructor). Kind says what a model computes: classifiers return
# logits, autoencoders return images in [0,1].
MODELS: dict[str, tuple[str, Callable[..., nn.Module]]] = {
    "lenet5": ("classifier", LeNet5),
    "lenet-substitute": ("classifier", LeNetSubstitute),
    "vgg16": ("classifier", VGG16),
    "resnet110": ("classifier", functools.partial(CifarResNet, depth=110)),
    "resnet": ("classifier", CifarResNet),
    "latent-classifier": ("classifier", LatentClassifier),
    "ae-classifier": ("classifier", _ae_classifier),
    "conv-ae": ("autoencoder", ConvAE),
    # The defenses of ``training.defenses``: images to logits like any classifier (so
    # attacks, evaluate and the audit take them as they are), trained by their own recipes.
    "magnet": ("classifier", _guarding(MagNet)),
    "puvae": ("classifier", _guarding(PuVAE)),
    "hgd": ("classifier", _guarding(HGD)),
    "cascade-dae": ("classifier", CascadeDAE),
    # The sensitivity experiment's variants of the paper's unstated choices.
    "lenet5-1998": ("classifier", LeNet5Original),
    "lenet5-norm": ("classifier", NormalizedLeNet5),
    "conv-ae-linear": ("autoencoder", ClippedLinearAE),
}
DEFENSES = ("magnet", "puvae", "hgd", "cascade-dae")
# classifiers trained by the standard loop (the defenses have recipes of their own)
CLASSIFIERS = tuple(k for k, (kind, _) in MODELS.items()
                    if kind == "classifier" and k not in DEFENSES)
AUTOENCODERS = tuple(k for k, (kind, _) in MODELS.items() if kind == "autoencoder")


def model_kind(arch: str) -> str:
    if arch not in MODELS:
        raise UserError(f"unknown architecture {arch!r}; known: {', '.join(MODELS)}")
    return MODELS[arch][0]


def build_model(arch: str, **kwargs: Any) -> nn.Module:
    """Build ``arch`` with ``kwargs``; a wrong name or argument is a user error."""
    model_kind(arch)
    try:
        return MODELS[arch][1](**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"cannot build {arch} with {kwargs}: {exc}") from exc
