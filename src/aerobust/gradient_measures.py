"""Other readings of Table 4's gradient amplitude G, one number per image, for the
sensitivity experiment: the paper defines G (eq. 2) as the L1 norm of the input gradient
of "the softmax output" and leaves open which output, which norm and on which inputs.
``metrics.gradient_amplitude`` stays the reading the paper's table is compared with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aerobust.attacks.base import attack_mode
from aerobust.errors import UserError

# What is differentiated: the true class's softmax probability (DESIGN.md's reading of
# eq. 2), the cross-entropy loss, or the true class's logit.
OUTPUTS = ("softmax", "loss", "logit")
# How a gradient becomes a number: its L1 norm (eq. 2), the mean |gradient| per pixel
# (L1 over the pixel count) or its L2 norm.
REDUCTIONS = ("l1", "mean-abs", "l2")


def _reduce(grad: torch.Tensor, reduction: str) -> torch.Tensor:
    flat = grad.flatten(1).double()
    if reduction == "l1":
        return flat.abs().sum(dim=1)
    if reduction == "mean-abs":
        return flat.abs().mean(dim=1)
    return flat.norm(dim=1)


def gradient_per_image(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       output: str = "softmax", reduction: str = "l1",
                       batch_size: int = 256) -> torch.Tensor:
    """For each image, ``reduction`` of the input gradient of ``output`` at that image
    (float64, on the CPU). One backward per batch of the sum of the per-image scalars:
    in eval mode images do not interact, so each gets its own gradient."""
    if output not in OUTPUTS or reduction not in REDUCTIONS:
        raise UserError(f"gradient output must be one of {', '.join(OUTPUTS)} and reduction "
                        f"one of {', '.join(REDUCTIONS)}, got {output!r}, {reduction!r}")
    if len(x) != len(y) or len(x) == 0:
        raise UserError(f"need as many labels as images (>0), got {len(x)} and {len(y)}")
    device = next(model.parameters()).device
    out = []
    with attack_mode(model), torch.enable_grad():
        for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
            xb = xb.to(device).requires_grad_(True)
            (grad,) = torch.autograd.grad(_scalar(model(xb), yb.to(device), output), xb)
            out.append(_reduce(grad, reduction).cpu())
    return torch.cat(out)


def _scalar(logits: torch.Tensor, y: torch.Tensor, output: str) -> torch.Tensor:
    """The sum over the batch of each image's ``output``."""
    if output == "loss":
        return F.cross_entropy(logits, y, reduction="sum")
    scores = logits.softmax(dim=1) if output == "softmax" else logits
    return scores.gather(1, y[:, None]).sum()
