"""The paper's convolutional autoencoder: encoder 3 conv + 2 pooling, decoder 3 conv +
2 transposed conv, sigmoid output (docs/design.md#autoencoder gives the layer widths)."""

from __future__ import annotations

import math

import torch
from torch import nn


class ConvAE(nn.Module):
    """Image size must be divisible by 4 (two 2x poolings undone by two 2x transposed convs)."""

    def __init__(self, in_channels: int = 1, width1: int = 32, width2: int = 64,
                 image_size: int = 28) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"conv-ae needs an image size divisible by 4, got {image_size}")
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width1, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width1, width2, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width2, width2, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(width2, width2, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width2, width2, 2, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(width2, width1, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width1, width1, 2, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(width1, in_channels, 3, padding=1),
            nn.Sigmoid(),
        )
        self.latent_shape = (width2, image_size // 4, image_size // 4)
        # Kaiming init: with PyTorch's default init small AEs can sit at a blank output
        # for epochs (docs/design.md#autoencoder).
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def init_output_bias(self, mean_pixel: float) -> None:
        """Start the sigmoid output at the data's mean pixel instead of 0.5."""
        p = min(max(float(mean_pixel), 1e-3), 1 - 1e-3)
        out = self.decoder[-2]
        with torch.no_grad():
            out.bias.fill_(math.log(p / (1 - p)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
