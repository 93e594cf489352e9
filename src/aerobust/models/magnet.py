"""MagNet (Meng & Chen, CCS 2017) on grey images: two autoencoders, a reformer and two
reconstruction-error detectors in front of a classifier, as one module from images to
logits plus a reject logit (``aerobust.rejection``).

Recipe (the paper's MNIST setting, Sec. 5 and its published code): both autoencoders are
trained to reconstruct clean images from images with Gaussian noise of volume 0.1 added,
with MSE. The reformer is AE-I. Detector I scores the mean squared reconstruction error
of AE-I, detector II the mean absolute error of AE-II; each threshold is set on held-out
clean data at a false-positive rate of 0.001 (``rejection.threshold_at``), and an input
is rejected when either score is above its threshold.

Choices where the paper is silent or does not fit: the upsampling is nearest-neighbour
(Keras' ``UpSampling2D``, which the authors' code uses); the reject logit's excess is
``max log(score / threshold)`` (``rejection.log_excess``), one scale for both detectors;
the thresholds are buffers, so they travel in the checkpoint and are +inf (never reject)
until training sets them. The forward pass is deterministic (noise is added only in
training).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aerobust.rejection import log_excess, with_reject_logit


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.Sigmoid()]


class MagNetAE1(nn.Module):
    """AE-I: conv 3x3x3 + sigmoid, 2x2 average pooling, conv 3x3x3 + sigmoid; mirrored:
    conv 3x3x3 + sigmoid, 2x upsampling, conv 3x3x3 + sigmoid, conv 3x3xC + sigmoid."""

    def __init__(self, in_channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        if image_size % 2:
            raise ValueError(f"MagNet AE-I needs an even image size, got {image_size}")
        self.encoder = nn.Sequential(*_conv(in_channels, 3), nn.AvgPool2d(2), *_conv(3, 3))
        self.decoder = nn.Sequential(*_conv(3, 3), nn.Upsample(scale_factor=2),
                                     *_conv(3, 3), *_conv(3, in_channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


class MagNetAE2(nn.Module):
    """AE-II: three 3x3 convolutions with sigmoids (3, 3, C filters), no pooling."""

    def __init__(self, in_channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        self.net = nn.Sequential(*_conv(in_channels, 3), *_conv(3, 3), *_conv(3, in_channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def reconstruction_error(x: Tensor, recon: Tensor, p: int) -> Tensor:
    """Per sample, the mean over pixels of ``|x - recon|^p`` (MagNet's detector score)."""
    return (x - recon).abs().pow(p).flatten(1).mean(dim=1)


class MagNet(nn.Module):
    """``classifier(AE-I(x))`` with the reject logit of detectors I (L2) and II (L1)."""

    rejects = True

    def __init__(self, classifier: nn.Module, in_channels: int = 1,
                 image_size: int = 28) -> None:
        super().__init__()
        self.classifier = classifier
        self.ae1 = MagNetAE1(in_channels, image_size)
        self.ae2 = MagNetAE2(in_channels, image_size)
        self.register_buffer("thresholds", torch.full((2,), torch.inf))

    def scores(self, x: Tensor, recon1: Tensor | None = None) -> Tensor:
        """``(N, 2)``: detector I's L2 and detector II's L1 reconstruction errors."""
        recon1 = self.ae1(x) if recon1 is None else recon1
        return torch.stack([reconstruction_error(x, recon1, 2),
                            reconstruction_error(x, self.ae2(x), 1)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        recon = self.ae1(x)
        return with_reject_logit(self.classifier(recon),
                                 log_excess(self.scores(x, recon), self.thresholds))
