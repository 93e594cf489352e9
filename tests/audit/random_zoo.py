"""Randomised defenses on the bundled digits, and the plain EOT-PGD an attacker writes
against them in 30 lines: the yardstick of the audit's EOT rungs (tests and
``benchmarks/audit_eot.py``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import Tensor, nn

from aerobust.attacks.judgment import JUDGE_DRAWS, confirmed, fooled

EPS = 0.1


def _draw(high: int) -> int:
    return int(torch.randint(high, ()))


class ResizePad(nn.Module):
    """Random resizing and random padding (Xie et al. 2018), scaled to 8x8 digits: the
    image resized to a random side in 8-11, then put at a random place in 12x12 zeros
    (one draw per forward)."""

    def forward(self, x: Tensor) -> Tensor:
        side = 8 + _draw(4)
        small = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        top, left = _draw(13 - side), _draw(13 - side)
        return F.pad(small, (left, 12 - side - left, top, 12 - side - top))


class Noise(nn.Module):
    """Additive Gaussian noise on the input."""

    def forward(self, x: Tensor) -> Tensor:
        return x + 0.3 * torch.randn_like(x)


class Dropout(nn.Module):
    """Dropout kept on at test time (eval mode does not turn it off)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, p=0.3, training=True)


class OneOf(nn.Module):
    """One of several preprocessings, drawn per forward: identity, a 3x3 blur, a
    one-pixel shift, or noise."""

    def forward(self, x: Tensor) -> Tensor:
        choice = _draw(4)
        if choice == 1:
            return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        if choice == 2:
            return torch.roll(x, shifts=1, dims=3)
        if choice == 3:
            return x + 0.2 * torch.randn_like(x)
        return x


DEFENSES: dict[str, Callable[[], nn.Module]] = {
    "resize-pad": ResizePad, "noise": Noise, "dropout": Dropout, "one-of": OneOf}


def _classifier(defense: str) -> nn.Module:
    size = 144 if defense == "resize-pad" else 64
    hidden: list[nn.Module] = [nn.Linear(size, 64), nn.ReLU()]
    if defense == "dropout":
        hidden.append(Dropout())
    return nn.Sequential(nn.Flatten(), *hidden, nn.Linear(64, 10))


def digits() -> tuple[Tensor, Tensor]:
    data = load_digits()
    return (torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16,
            torch.tensor(data.target, dtype=torch.long))


def defended(defense: str, steps: int = 400) -> nn.Module:
    """The defense in front of an MLP trained through it (full batch, on the first
    1,400 digits): the defense's randomness is part of the model it was trained for.
    Test-time dropout sits inside the classifier instead of in front of it."""
    x, y = digits()
    torch.manual_seed(0)
    model = _classifier(defense) if defense == "dropout" else nn.Sequential(
        DEFENSES[defense](), _classifier(defense))
    params = list(model.parameters())
    for _ in range(steps):
        loss = F.cross_entropy(model(x[:1400]), y[:1400])
        with torch.no_grad():
            for p, g in zip(params, torch.autograd.grad(loss, params), strict=True):
                p -= 0.5 * g
    return model.eval().requires_grad_(False)


def eot_pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float = EPS, steps: int = 100,
            restarts: int = 2, draws: int = 16, seed: int = 0) -> Tensor:
    """Plain EOT-PGD: ``restarts`` random starts, ``steps`` fixed steps of ``eps / 10``
    along the sign of the cross-entropy's gradient averaged over ``draws`` forwards;
    a point is broken when the final iterate of any restart fools the shared judgment,
    confirmed (``judgment.confirmed``: the best of several attacks).
    Returns which points stay robust (correct clean and under every restart)."""
    gen = torch.Generator().manual_seed(seed)
    robust = ~fooled(model, x, y)
    for _ in range(restarts):
        adv = (x + eps * (2 * torch.rand(x.shape, generator=gen) - 1)).clamp(0, 1)
        for _ in range(steps):
            adv.requires_grad_(True)
            with torch.enable_grad():
                loss = sum(F.cross_entropy(model(adv), y, reduction="sum")
                           for _ in range(draws))
                (grad,) = torch.autograd.grad(loss, adv)
            adv = torch.min(torch.max(adv.detach() + eps / 10 * grad.sign(), x - eps),
                            x + eps).clamp(0, 1)
        robust &= ~confirmed(model, adv, y, JUDGE_DRAWS, fooled(model, adv, y))
    return robust
