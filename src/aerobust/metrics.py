"""Batched measurements of trained models: accuracy, loss, reconstruction error and the
input-gradient amplitude."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aerobust.attacks.base import attack_mode
from aerobust.errors import UserError


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Predicted labels, batch by batch on the model's device; returned on x's device."""
    device = next(model.parameters()).device
    out = [model(x[i : i + batch_size].to(device)).argmax(1).to(x.device)
           for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


@torch.no_grad()
def classifier_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      batch_size: int = 512) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on ``(x, y)``."""
    device = next(model.parameters()).device
    correct, loss = 0, 0.0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        logits = model(xb)
        correct += int((logits.argmax(1) == yb).sum())
        loss += float(F.cross_entropy(logits, yb, reduction="sum"))
    return correct / len(x), loss / len(x)


@torch.no_grad()
def reconstruction_mse(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> float:
    """Mean squared error per pixel between ``model(x)`` and ``x``."""
    device = next(model.parameters()).device
    total = 0.0
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device)
        total += float(F.mse_loss(model(xb), xb, reduction="sum"))
    return total / x.numel()


GRADIENT_TARGETS = ("true", "predicted", "loss")


def gradient_amplitude(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       target: str = "true", batch_size: int = 256) -> float:
    """Mean over ``x`` of the L1 norm of an input gradient: the paper's Table 4 (eq. 2).

    ``target="true"``: of the softmax probability of the true class (docs/design.md's reading
    of the paper's "gradient after the softmax layer"); ``"predicted"``: of the predicted
    class's probability; ``"loss"``: of the cross-entropy loss. Small values flag
    gradient masking: attacks that follow the gradient find little to follow.

    One backward per batch of the sum of the per-sample scalars: in eval mode samples do
    not interact, so the gradient of the sum w.r.t. each input is that sample's own.
    """
    if target not in GRADIENT_TARGETS:
        raise UserError(f"gradient target must be one of {', '.join(GRADIENT_TARGETS)}, "
                        f"got {target!r}")
    if len(x) != len(y) or len(x) == 0:
        raise UserError(f"need as many labels as images (>0), got {len(x)} and {len(y)}")
    device = next(model.parameters()).device
    total = torch.zeros((), dtype=torch.float64)
    with attack_mode(model), torch.enable_grad():
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(device).requires_grad_(True)
            yb = y[i : i + batch_size].to(device)
            logits = model(xb)
            if target == "loss":
                scalar = F.cross_entropy(logits, yb, reduction="sum")
            else:
                cls = yb if target == "true" else logits.detach().argmax(dim=1)
                scalar = logits.softmax(dim=1).gather(1, cls[:, None]).sum()
            (grad,) = torch.autograd.grad(scalar, xb)
            total += grad.abs().flatten(1).sum(dim=1).double().sum().cpu()
    return float(total) / len(x)
