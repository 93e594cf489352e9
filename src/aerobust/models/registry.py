"""Model names -> constructors, so specs and checkpoints name architectures as strings."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import nn

from aerobust.errors import UserError
from aerobust.models.autoencoder import ConvAE
from aerobust.models.composite import AEClassifier, LatentClassifier
from aerobust.models.lenet import LeNet5, LeNetSubstitute
from aerobust.models.resnet import CifarResNet
from aerobust.models.variants import ClippedLinearAE, LeNet5Original, NormalizedLeNet5
from aerobust.models.vgg import VGG16


def _ae_classifier(autoencoder: dict[str, Any], classifier: dict[str, Any]) -> nn.Module:
    return AEClassifier(
        build_model(autoencoder["arch"], **autoencoder.get("kwargs", {})),
        build_model(classifier["arch"], **classifier.get("kwargs", {})),
    )


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
    # The sensitivity experiment's variants of the paper's unstated choices.
    "lenet5-1998": ("classifier", LeNet5Original),
    "lenet5-norm": ("classifier", NormalizedLeNet5),
    "conv-ae-linear": ("autoencoder", ClippedLinearAE),
}
CLASSIFIERS = tuple(k for k, (kind, _) in MODELS.items() if kind == "classifier")
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
