"""Models built from parts: an autoencoder in front of a classifier (AE-C), and a
classifier on the encoder's latent features (the paper's Fig. 3)."""

from __future__ import annotations

import torch
from torch import nn

from aerobust.models.autoencoder import ConvAE


class AEClassifier(nn.Module):
    """``classifier(autoencoder(x))`` as one module, so every attack differentiates
    through the whole AE-C (the paper's Fig. 1).

    Args:
        autoencoder: any module mapping [0,1] images to images of the same shape: an AE
            from ``load_model``, or your own preprocessing defense.
        classifier: any module mapping [0,1] images to logits.

    Returns:
        An ``nn.Module``; the audit probes its two parts one by one.

    Example:
        >>> blur = nn.AvgPool2d(3, stride=1, padding=1)
        >>> defended = aerobust.AEClassifier(blur, model)
        >>> defended(x).shape
        torch.Size([8, 10])
    """

    def __init__(self, autoencoder: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.autoencoder(x))


class LatentClassifier(nn.Module):
    """The AE's encoder plus one linear layer on the flattened latent features; the
    decoder is kept so joint losses (Lce + lambda*Lrec, alternating) can shape the
    encoder. ``forward`` returns logits only, so attacks see a plain classifier."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 width1: int = 32, width2: int = 64) -> None:
        super().__init__()
        self.autoencoder = ConvAE(in_channels, width1, width2, image_size)
        c, h, w = self.autoencoder.latent_shape
        self.head = nn.Linear(c * h * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.autoencoder.encode(x).flatten(1))

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and reconstruction from one encoder pass."""
        z = self.autoencoder.encode(x)
        return self.head(z.flatten(1)), self.autoencoder.decode(z)
