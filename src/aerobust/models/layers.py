"""Small layers shared by the models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# Per-channel statistics used by the in-model normalization layer; every model takes
# [0,1] pixels, so attacks and epsilons stay in pixel space.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


def default_stats(in_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """CIFAR-10 statistics for colour input, MNIST statistics for grey input."""
    if in_channels == 3:
        return CIFAR10_MEAN, CIFAR10_STD
    return MNIST_MEAN * in_channels, MNIST_STD * in_channels


class Normalize(nn.Module):
    """``(x - mean) / std`` as a layer, so normalization is part of the differentiated model."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError("mean and std need one value per channel")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def flat_features(module: nn.Module, in_channels: int, image_size: int) -> int:
    """Size of ``module``'s flattened output, found with one dummy forward at build time."""
    with torch.no_grad():
        out = module(torch.zeros(1, in_channels, image_size, image_size))
    if out.numel() == 0:
        raise ValueError(f"image size {image_size} is too small for this architecture")
    return out.numel()
