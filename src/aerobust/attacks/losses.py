"""Per-sample losses an attack maximises: ``loss(logits, y) -> (N,)``.

Named so that an attack's configuration stays data (``loss="dlr"``), while any callable
with the same shape can be injected for an adaptive attack (Tramer et al. 2020: the
loss is the first thing to adapt to a defense).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from aerobust.errors import UserError
from aerobust.rejection import detector_margin, targeted_detector_margin

LossFn = Callable[[Tensor, Tensor], Tensor]


def ce(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy: the loss of FGSM, PGD and the paper. Saturates where softmax
    does (a scaled-up logit vector gives it zero gradient in float32)."""
    return F.cross_entropy(logits, y, reduction="none")


def _true_and_best_other(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    label = y.unsqueeze(1)
    return logits.gather(1, label).squeeze(1), logits.scatter(1, label, -torch.inf).amax(1)


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """``max_{j!=y} z_j - z_y``: positive exactly when the model is fooled. Linear in
    the logits, so a softmax that saturates cannot hide its gradient (CW's loss)."""
    true, other = _true_and_best_other(logits, y)
    return other - true


def dlr(logits: Tensor, y: Tensor) -> Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020): the margin divided by the gap
    between the largest and third-largest logit, so it is invariant to shifting and
    scaling the logits: a defense that multiplies them by 1e4 changes nothing."""
    if logits.shape[1] < 3:
        raise UserError(f"dlr loss needs at least 3 classes, got {logits.shape[1]}")
    top = logits.topk(3, dim=1).values
    return margin(logits, y) / (top[:, 0] - top[:, 2] + 1e-12)


def targeted_dlr(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR (APGD-T): raise the target's logit over the true one, scaled by the
    gap between the largest and the mean of the third and fourth largest logits."""
    if logits.shape[1] < 4:
        raise UserError(f"targeted dlr loss needs at least 4 classes, got {logits.shape[1]}")
    top = logits.topk(4, dim=1).values
    true = logits.gather(1, y.unsqueeze(1)).squeeze(1)
    aimed = logits.gather(1, target.unsqueeze(1)).squeeze(1)
    return (aimed - true) / (top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + 1e-12)


def targeted_ce(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Minus the cross-entropy towards ``target`` (to maximise)."""
    return -F.cross_entropy(logits, target, reduction="none")


def targeted_margin(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """``z_target - z_y``: positive when the target beats the true class."""
    return (logits.gather(1, target.unsqueeze(1)) - logits.gather(1, y.unsqueeze(1))).squeeze(1)


# "detector-margin": the adaptive loss against a model that rejects (``rejection``)
LOSSES: dict[str, LossFn] = {"ce": ce, "dlr": dlr, "margin": margin,
                             "detector-margin": detector_margin}
TARGETED: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "ce": targeted_ce, "dlr": targeted_dlr, "margin": targeted_margin,
    "detector-margin": targeted_detector_margin}


def resolve(attack: str, loss: str | LossFn) -> LossFn:
    """The loss function ``loss`` names (or ``loss`` itself when it is callable)."""
    if callable(loss):
        return loss
    if isinstance(loss, str) and loss.lower() in LOSSES:
        return LOSSES[loss.lower()]
    raise UserError(f"{attack}: loss must be one of {', '.join(LOSSES)} or a callable "
                    f"(logits, y) -> per-sample loss, got {loss!r}")


def describe(loss: str | LossFn) -> str:
    """A loss as recorded beside results: its name, or a callable's qualified name."""
    if isinstance(loss, str):
        return loss.lower()
    return f"{getattr(loss, '__module__', '?')}.{getattr(loss, '__qualname__', repr(loss))}"
