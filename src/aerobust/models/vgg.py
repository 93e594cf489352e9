"""VGG16 with batch norm for small (CIFAR-sized) images, the paper's CIFAR-10 classifier."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from aerobust.models.layers import Normalize, default_stats

VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                512, 512, 512, "M")


class VGG16(nn.Module):
    """13 conv3x3+BN+ReLU layers in five pooled stages, then one linear layer.

    Pooling uses ceil mode so 28x28 inputs (MNIST, digits) reach 1x1 like 32x32 ones do.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if mean is None or std is None:
            mean, std = default_stats(in_channels)
        layers: list[nn.Module] = [Normalize(mean, std)]
        c = in_channels
        size = image_size
        for v in VGG16_LAYERS:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
                size = -(-size // 2)
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v),
                           nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Linear(c * size * size, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))
