"""The high-level representation guided denoiser (HGD; Liao et al., CVPR 2018), scaled to
28x28 grey images: a U-Net that predicts the adversarial noise, subtracted from the input
before the classifier; one module from images to logits.

The denoiser is trained (``training.defenses``) with the L1 distance between the
classifier's high-level representation of the denoised adversarial input and of the
clean input: the last convolutional block's output (FGD, "feature guided") or the logits
(LGD). The classifier is frozen.

Scaled down from the paper's ImageNet DUNET: two resolutions below the input (28, 14,
7) instead of five, with 16/32/64 filters (32/64/128 took 2.4x the time per training
batch on a CPU, for 28x28 digits), each block two 3x3 convolutions with batch
norm and ReLU, skip connections by concatenation and a 1x1 output convolution predicting
the noise; the output is not clipped to [0,1] (as in the paper). The forward pass is
deterministic (batch norm in eval mode).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class UNetDenoiser(nn.Module):
    """Predicts the perturbation of ``x``; ``x - net(x)`` is the denoised image."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, width: int = 16) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"the HGD U-Net needs an image size divisible by 4, "
                             f"got {image_size}")
        self.down1 = _block(in_channels, width)
        self.down2 = _block(width, 2 * width)
        self.bottom = _block(2 * width, 4 * width)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(4 * width, 2 * width, 2, stride=2)
        self.merge2 = _block(4 * width, 2 * width)
        self.up1 = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.merge1 = _block(2 * width, width)
        self.out = nn.Conv2d(width, in_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        d1 = self.down1(x)
        d2 = self.down2(self.pool(d1))
        b = self.bottom(self.pool(d2))
        u2 = self.merge2(torch.cat([self.up2(b), d2], dim=1))
        u1 = self.merge1(torch.cat([self.up1(u2), d1], dim=1))
        return self.out(u1)


class HGD(nn.Module):
    """``classifier(x - denoiser(x))``."""

    def __init__(self, classifier: nn.Module, in_channels: int = 1, image_size: int = 28,
                 width: int = 16) -> None:
        super().__init__()
        self.classifier = classifier
        self.denoiser = UNetDenoiser(in_channels, image_size, width)

    def denoise(self, x: Tensor) -> Tensor:
        return x - self.denoiser(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.denoise(x))
