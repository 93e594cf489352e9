"""FGSM: exactly one signed gradient step, and the gradient is the whole model's."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aerobust.attacks import FGSM, Execution


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """An independent gradient of the (mean) CE loss w.r.t. the input."""
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return g


def test_perturbation_is_eps_sign_gradient_where_the_clip_does_not_bind(
    digits: Any, trained: nn.Module
) -> None:
    x, y, eps = digits.x[:128], digits.y[:128], 0.07
    result = FGSM(eps=eps)(trained, x, y, execution=Execution(block_size=128))
    step = eps * input_gradient(trained, x, y).sign()
    free = (x + step > 0) & (x + step < 1)
    assert free.float().mean() > 0.2 and (~free).any()  # both cases occur
    torch.testing.assert_close((result.x_adv - x)[free], step[free], rtol=0, atol=1e-6)
    assert torch.equal(result.x_adv, (x + step).clamp(0, 1))
    assert result.linf.max() <= eps + 1e-6
    assert (result.forwards, result.backwards) == (2, 1)


def test_attack_differentiates_through_the_autoencoder(digits: Any, trained: nn.Module) -> None:
    """On AE(.)->C the step follows the composite's gradient, not C's alone."""
    torch.manual_seed(0)
    autoencoder = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 64), nn.Sigmoid(),
        nn.Unflatten(1, (1, 8, 8)),
    )
    composite = nn.Sequential(autoencoder, trained)
    x, y, eps = digits.x[:64], digits.y[:64], 0.05
    through_ae = FGSM(eps=eps)(composite, x, y).x_adv - x
    classifier_only = FGSM(eps=eps)(trained, x, y).x_adv - x
    assert (through_ae.sign() != classifier_only.sign()).float().mean() > 0.2
    expected = (x + eps * input_gradient(composite, x, y).sign()).clamp(0, 1) - x
    assert torch.equal(through_ae, expected)
