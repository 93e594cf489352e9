"""Batched measurements of trained models: accuracy, loss, reconstruction error."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
