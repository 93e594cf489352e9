"""The cascaded denoising autoencoder with dimensionality reduction (Sahay, Mahfuz & El
Gamal, CISS 2019): a denoising AE, then a second, fully connected AE whose
bottleneck feeds a classifier trained on the reduced representation; one module from
images to logits.

Training (``training.defenses``), in the paper's order: the denoiser learns to remove
Gaussian noise; the reducing AE learns to reconstruct the denoiser's outputs of clean
images; the classifier learns on the bottleneck codes of denoised clean images.

Choices where the paper leaves room: the denoiser is the paper-under-study's AE
(``ConvAE``), so the cascade differs from the plain DAE only by the reduction; the
reducing AE is 784-256-32-256-784 with ReLU and a sigmoid output (32 dimensions keep
MNIST classifiable, well below the 784 inputs); the classifier on the code is a
32-128-K perceptron, a new classifier (the image classifier C cannot read a code). The
forward pass is deterministic (noise is added only in training).
"""

from __future__ import annotations

from torch import Tensor, nn

from aerobust.models.autoencoder import ConvAE


class CascadeDAE(nn.Module):
    """``head(reduce(dae(x)))``; ``expand`` is the reducing AE's decoder (training only)."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10,
                 bottleneck: int = 32, hidden: int = 256) -> None:
        super().__init__()
        pixels = in_channels * image_size * image_size
        self.dae = ConvAE(in_channels, image_size=image_size)
        self.reduce = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden),
                                    nn.ReLU(inplace=True), nn.Linear(hidden, bottleneck))
        self.expand = nn.Sequential(nn.Linear(bottleneck, hidden), nn.ReLU(inplace=True),
                                    nn.Linear(hidden, pixels), nn.Sigmoid(),
                                    nn.Unflatten(1, (in_channels, image_size, image_size)))
        self.head = nn.Sequential(nn.Linear(bottleneck, 128), nn.ReLU(inplace=True),
                                  nn.Linear(128, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.reduce(self.dae(x)))
