"""Variants of the paper's MNIST models for the choices the paper leaves unstated (the
sensitivity experiment): the 1998 LeNet5, LeNet5 with the input normalised inside the
model, and the AE with a linear output clipped to [0,1]. Separate classes, so the
models the paper's tables use keep their code."""

from __future__ import annotations

import torch
from torch import nn

from aerobust.models.autoencoder import ConvAE
from aerobust.models.layers import Normalize, default_stats, flat_features
from aerobust.models.lenet import LeNet5


class LeNet5Original(nn.Module):
    """LeNet5 as LeCun et al. (1998) built it, in its usual modern reading: tanh
    activations and average pooling (subsampling), conv5x5(6), conv5x5(16), fc120, fc84.
    The 1998 net's trainable subsampling coefficients, sparse C3 connections and RBF
    output are left out, as in the common re-implementations."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> None:
        super().__init__()
        pad = 2 if image_size < 32 else 0
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad),
            nn.Tanh(),
            nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.Tanh(),
            nn.AvgPool2d(2),
            nn.Flatten(),
        )
        n = flat_features(self.features, in_channels, image_size)
        self.classifier = nn.Sequential(
            nn.Linear(n, 120),
            nn.Tanh(),
            nn.Linear(120, 84),
            nn.Tanh(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class NormalizedLeNet5(nn.Module):
    """LeNet5 behind ``(x - mean) / std`` (MNIST's statistics for grey input), the
    normalisation many training scripts apply: inside the model, so attacks still work
    on [0,1] pixels and their epsilons keep their meaning."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> None:
        super().__init__()
        self.normalize = Normalize(*default_stats(in_channels))
        self.net = LeNet5(in_channels, num_classes, image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


class ClippedLinearAE(ConvAE):
    """The paper's AE with no output activation: trained on its linear output (MSE),
    clipped to [0,1] in use (eval mode), so that its output is an image. Its gradient
    is zero where the clip binds, where the sigmoid's is only small."""

    def __init__(self, in_channels: int = 1, width1: int = 32, width2: int = 64,
                 image_size: int = 28) -> None:
        super().__init__(in_channels, width1, width2, image_size)
        self.decoder[-1] = nn.Identity()

    def init_output_bias(self, mean_pixel: float) -> None:
        """Start the linear output at the data's mean pixel."""
        with torch.no_grad():
            self.decoder[-2].bias.fill_(float(mean_pixel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.decoder(self.encoder(x))
        return out if self.training else out.clamp(0.0, 1.0)
