"""Model registry, the paper's architectures and the checkpoint format."""

from aerobust.models.autoencoder import ConvAE
from aerobust.models.checkpoint import load_model, read_checkpoint, save_checkpoint
from aerobust.models.composite import AEClassifier, LatentClassifier
from aerobust.models.lenet import LeNet5, LeNetSubstitute
from aerobust.models.registry import (
    AUTOENCODERS,
    CLASSIFIERS,
    DEFENSES,
    MODELS,
    build_model,
    model_kind,
)
from aerobust.models.resnet import CifarResNet
from aerobust.models.vgg import VGG16

__all__ = [
    "AUTOENCODERS",
    "CLASSIFIERS",
    "DEFENSES",
    "MODELS",
    "VGG16",
    "AEClassifier",
    "CifarResNet",
    "ConvAE",
    "LatentClassifier",
    "LeNet5",
    "LeNetSubstitute",
    "build_model",
    "load_model",
    "model_kind",
    "read_checkpoint",
    "save_checkpoint",
]
