"""Tiny models and data for the attack tests, as fixtures (test modules import nothing
from here: ``conftest`` is also the name of the top-level tests' module). Everything
builds or trains in about a second on two CPU cores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from tests.conftest import fit_by_gradient_descent


class Recorder(nn.Module):
    """Wraps a model and keeps a copy of every batch it is shown."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.model(x)


def make_mlp(hidden: int = 32, seed: int = 0) -> nn.Module:
    """A small classifier for 1x8x8 images."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def make_conv(seed: int = 0) -> nn.Module:
    """A small conv classifier for 1x8x8 images (pooling and ReLU: piecewise linear)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
    )


@pytest.fixture
def mlp() -> Callable[..., nn.Module]:
    return make_mlp


@pytest.fixture
def conv() -> Callable[..., nn.Module]:
    return make_conv


@pytest.fixture
def recorder() -> type[Recorder]:
    return Recorder




@pytest.fixture(autouse=True)
def _attack_tests_on_one_thread(one_thread: None) -> None:
    """Every attack test runs on one thread (``one_thread`` in the top conftest)."""


@dataclass
class Digits:
    x: torch.Tensor
    y: torch.Tensor


@pytest.fixture(scope="session")
def digits() -> Digits:
    """sklearn's 8x8 digits in [0,1], as (N,1,8,8) float32 and int64 labels."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16
    return Digits(x=x, y=torch.tensor(data.target, dtype=torch.long))


@pytest.fixture(scope="session")
def trained(digits: Digits) -> nn.Module:
    """An MLP trained on digits to ~98% train accuracy in half a second (plain gradient
    descent: ``torch.optim`` would import ``torch._dynamo``, which costs seconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = fit_by_gradient_descent(make_mlp(hidden=64), digits.x, digits.y, steps=300)
    torch.set_num_threads(threads)
    model.eval().requires_grad_(False)
    with torch.no_grad():
        accuracy = (model(digits.x).argmax(1) == digits.y).float().mean().item()
    assert accuracy > 0.95, accuracy
    return model


@dataclass
class Affine:
    """A multi-class affine classifier and points whose exact minimal L2 distance to
    its decision boundary is known."""

    model: nn.Linear
    x: torch.Tensor
    y: torch.Tensor
    distance: torch.Tensor


@pytest.fixture(scope="session")
def affine() -> Affine:
    """Points near 0.5 of an affine 5-class model in float64 whose boundary is 0.03-0.15
    away in L2, so no pixel reaches 0 or 1 on the way; weights are large, so logit gaps
    are too and DeepFool's 1e-4 logit margin is negligible."""
    g = torch.Generator().manual_seed(1)
    dim, classes, n = 20, 5, 128
    model = nn.Linear(dim, classes).double().requires_grad_(False)
    model.weight.copy_(100 * torch.randn(classes, dim, generator=g, dtype=torch.float64))
    model.bias.copy_(-model.weight @ torch.full((dim,), 0.5, dtype=torch.float64))
    model.bias.add_(50 * torch.randn(classes, generator=g, dtype=torch.float64))
    x = (0.5 + 0.05 * torch.randn(n, dim, generator=g, dtype=torch.float64)).clamp(0.3, 0.7)
    logits = model(x)
    pred = logits.argmax(1)
    # Distance to the complement of a convex polyhedral cell: the nearest facet plane.
    w_diff = model.weight.unsqueeze(0) - model.weight[pred].unsqueeze(1)  # (n, K, dim)
    f_diff = logits - logits.gather(1, pred[:, None])  # (n, K), <= 0
    ratio = (f_diff.abs() / w_diff.norm(dim=2)).scatter(1, pred[:, None], torch.inf)
    distance = ratio.min(dim=1).values
    keep = ((distance > 0.03) & (distance < 0.15)).nonzero().squeeze(1)[:16]
    assert len(keep) == 16
    return Affine(model=model, x=x[keep], y=pred[keep], distance=distance[keep])
