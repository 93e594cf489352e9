"""LeNet5 (the paper's MNIST classifier) and a differently built MNIST substitute (Table 2a)."""

from __future__ import annotations

from torch import nn

from aerobust.models.layers import flat_features


class LeNet5(nn.Module):
    """conv5x5(6)+pool, conv5x5(16)+pool, fc120, fc84, fc classes (ReLU, max pooling).

    28x28 inputs are padded by 2 in the first conv, as in the original 32x32 design.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> None:
        super().__init__()
        pad = 2 if image_size < 32 else 0
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        n = flat_features(self.features, in_channels, image_size)
        self.classifier = nn.Sequential(
            nn.Linear(n, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class LeNetSubstitute(nn.Module):
    """conv3x3(32) x2 + pool, conv3x3(64) x2 + pool, fc200, fc classes: a LeNet-like model
    that shares no weights or layout with LeNet5, for the black-box substitute of Table 2a."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        n = flat_features(self.features, in_channels, image_size)
        self.classifier = nn.Sequential(
            nn.Linear(n, 200),
            nn.ReLU(inplace=True),
            nn.Linear(200, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
