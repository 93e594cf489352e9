"""Gradient amplitude (Table 4) against central finite differences, in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aerobust.errors import UserError
from aerobust.metrics import gradient_amplitude


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Flatten(),
                         nn.BatchNorm1d(48), nn.Linear(48, 4)).double().eval()


def _finite_difference(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: str,
                       h: float = 1e-6) -> float:
    """Mean L1 norm of the central-difference gradient, every coordinate in one batch."""
    n, d = len(x), x[0].numel()
    eye = torch.eye(d, dtype=x.dtype).view(d, *x.shape[1:])

    def scalar(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = model(z)
        if target == "loss":
            return F.cross_entropy(logits, labels, reduction="none")
        return logits.softmax(1).gather(1, labels[:, None]).squeeze(1)

    with torch.no_grad():
        cls = y if target != "predicted" else model(x).argmax(1)
        xs = x.unsqueeze(1) + h * eye  # (n, d, ...)
        xm = x.unsqueeze(1) - h * eye
        labels = cls.repeat_interleave(d)
        grad = (scalar(xs.flatten(0, 1), labels) - scalar(xm.flatten(0, 1), labels)) / (2 * h)
    return grad.view(n, d).abs().sum(1).mean().item()


@pytest.mark.parametrize("target", ["true", "predicted", "loss"])
def test_matches_finite_differences(target: str) -> None:
    model = _model()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(10, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (10,), generator=g)
    ours = gradient_amplitude(model, x, y, target=target, batch_size=3)  # ragged batches
    assert ours > 0
    assert ours == pytest.approx(_finite_difference(model, x, y, target), rel=1e-6)


def test_restores_the_model_and_validates() -> None:
    model = _model().train()
    x, y = torch.rand(4, 1, 4, 4, dtype=torch.float64), torch.zeros(4, dtype=torch.long)
    running = model[3].running_mean.clone()
    gradient_amplitude(model, x, y)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())  # input gradients only
    assert torch.equal(model[3].running_mean, running)  # evaluated in eval mode
    with pytest.raises(UserError, match="gradient target"):
        gradient_amplitude(model, x, y, target="logit")
