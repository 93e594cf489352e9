"""How a defense that rejects inputs says so, and what then counts as an error.

One convention, used by the models that detect (MagNet, PuVAE), by ``evaluate``, by the
attacks' success masks and by the audit:

- A rejecting model returns ``num_classes + 1`` logits; the last is the *reject logit*,
  and it wins the argmax exactly when the model rejects the input. The module that
  produces those logits has the attribute ``rejects = True`` (``rejects(model)`` finds it
  anywhere inside a wrapped model, e.g. behind an autoencoder or BPDA).
- On a clean input a rejection is an error (it counts against clean accuracy); the share
  of clean inputs rejected is the false-positive rate.
- An attack succeeds only when the adversarial is classified as a wrong *class*: an
  adversarial that is rejected is a point the defense holds, so a point is robust when
  its adversarial is classified correctly or rejected.

Why a logit rather than a second output: every attack, loss and metric already reads
``(N, C)`` logits, so a detector needs no new interface, and an attack can differentiate
through the detector's score (the reject logit) as through any class.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

REJECTS_ATTRIBUTE = "rejects"


def rejects(model: nn.Module) -> bool:
    """Whether ``model`` (or a module inside it) follows the reject-logit convention."""
    return any(getattr(m, REJECTS_ATTRIBUTE, False) is True for m in model.modules())


def rejected(logits: Tensor) -> Tensor:
    """Per sample: the reject logit (the last) wins the argmax."""
    return logits.argmax(dim=1) == logits.shape[1] - 1


def fooled(logits: Tensor, y: Tensor, rejecting: bool) -> Tensor:
    """Per sample: the prediction is a wrong class (argmax != y and, for a rejecting
    model, not the reject logit)."""
    predicted = logits.argmax(dim=1)
    wrong = predicted != y
    if rejecting:
        wrong &= predicted != logits.shape[1] - 1
    return wrong


def with_reject_logit(logits: Tensor, excess: Tensor) -> Tensor:
    """``logits`` with the reject logit appended: ``max_j z_j + excess``, so the input is
    rejected exactly when ``excess > 0`` (a tie keeps the class: argmax takes the first).

    ``excess`` is how far the detector's score is above its threshold, per sample; with
    several detectors, the largest (any detector rejects). Being a function of the score,
    it carries the detector's gradient to an attack that wants to stay below it."""
    return torch.cat([logits, (logits.amax(dim=1) + excess).unsqueeze(1)], dim=1)


def log_excess(scores: Tensor, thresholds: Tensor) -> Tensor:
    """``max_k log(s_k / t_k)`` over detectors ``k`` (scores ``(N, K)``, thresholds
    ``(K,)``, both positive): above 0 exactly when some score is above its threshold.
    A log ratio is scale-free, so detectors measured in different units (MagNet's L1 and
    L2 errors) weigh alike, and the excess stays comparable to a logit gap."""
    tiny = torch.finfo(scores.dtype).tiny
    return (scores.clamp_min(tiny).log() - thresholds.clamp_min(tiny).log()).amax(dim=1)


def detector_margin(logits: Tensor, y: Tensor) -> Tensor:
    """The adaptive loss against a detector (Carlini & Wagner 2017, "MagNet and
    'Efficient defenses...' are not robust"): ``max_{j != y, j != reject} z_j -
    max(z_y, z_reject)``, to maximise; positive exactly when the adversarial is a wrong
    class that is not rejected. Unlike CE or the margin over all logits, it gains nothing
    by raising the reject logit, and it pays for every step that raises the detector's
    score above the best wrong class. For rejecting models only (the last logit is the
    reject logit); any attack taking a ``loss`` callable (PGD, APGD) can use it."""
    classes = logits[:, :-1]
    label = y.unsqueeze(1)
    true = classes.gather(1, label).squeeze(1)
    other = classes.scatter(1, label, -torch.inf).amax(dim=1)
    return other - torch.maximum(true, logits[:, -1])


def targeted_detector_margin(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """``detector_margin`` towards ``target`` (APGD-T): ``z_target - max(z_y,
    z_reject)``, positive when the target beats both the label and the rejection."""
    aimed = logits.gather(1, target.unsqueeze(1)).squeeze(1)
    true = logits.gather(1, y.unsqueeze(1)).squeeze(1)
    return aimed - torch.maximum(true, logits[:, -1])


def threshold_at(scores: Tensor, fpr: float) -> float:
    """The threshold that rejects ``floor(fpr * n)`` of the ``n`` clean ``scores`` (those
    strictly above it): the detector's false-positive rate on these scores is then
    ``floor(fpr * n) / n`` (at most ``fpr``), as MagNet sets its thresholds on held-out
    clean data. ``fpr`` 0: the largest score (nothing held out is rejected)."""
    if not 0 <= fpr < 1 or len(scores) == 0:
        raise ValueError(f"need fpr in [0, 1) and some scores, got {fpr} and {len(scores)}")
    ranked = scores.detach().flatten().sort(descending=True).values
    return float(ranked[math.floor(fpr * len(ranked) + 1e-9)])
