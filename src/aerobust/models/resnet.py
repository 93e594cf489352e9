"""CIFAR ResNet (He et al. 2016, Sec. 4.2): 6n+2 layers; n=18 gives ResNet-110."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import nn

from aerobust.models.layers import Normalize, default_stats


class BasicBlock(nn.Module):
    """Two conv3x3+BN; the shortcut subsamples and zero-pads channels (option A of the
    paper), so the CIFAR ResNet adds no projection parameters."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride = stride
        self.pad = c_out - c_in

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x
        if self.stride != 1:
            short = short[:, :, :: self.stride, :: self.stride]
        if self.pad:
            short = F.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + short)


class CifarResNet(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        depth: int = 110,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        if mean is None or std is None:
            mean, std = default_stats(in_channels)
        self.normalize = Normalize(mean, std)
        self.conv = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks: list[nn.Module] = []
        c = 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(BasicBlock(c, width, 2 if stage > 0 and i == 0 else 1))
                c = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        out = F.relu(self.bn(self.conv(self.normalize(x))))
        out = self.blocks(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)
