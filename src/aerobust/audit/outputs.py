"""Outputs that hide the logits: what the model returns, and the view the attacks see.

Cross-entropy and DLR read logits. A model that returns probabilities (non-negative
rows summing to 1), log-probabilities, or logits so large that softmax saturates in
float arithmetic gives them a loss whose gradient is tiny or exactly zero, so gradient
attacks fail where the model is not robust at all (AutoAttack's authors warn about the
first case in their checks; Carlini et al. 2019, section 4.8). The audit names what the
outputs are, as evidence, and attacks a view of the model whose outputs are logits
again, judging every adversarial on the model as given (the view never changes an
argmax):

- a final ``nn.Softmax``/``nn.LogSoftmax`` module is removed: the attacks see the
  logits in front of it, which no transformation of saturated outputs could give back;
- probabilities otherwise become their logarithm (logits up to a per-row constant,
  which CE and DLR ignore), and log-probabilities stay as they are, both computed in
  float64 by a copy of the classifier: a softmax underflows to exactly 0 in float32
  once a logit gap exceeds about 100, in float64 only past about 700, and an exact 0
  has no gradient for any loss;
- saturated scores are divided by a constant that brings the median gap between the
  two largest back to ``TARGET_GAP``, which changes no gradient's direction but lets
  softmax, and so CE, see it.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from aerobust.audit.probes import SHARE_THRESHOLD, Probe
from aerobust.audit.stages import Stages

TOLERANCE = 1e-4  # |row sum - 1| of probabilities, |logsumexp| of log-probabilities
TARGET_GAP = 10.0  # the median top-2 gap of rescaled saturated scores


def kind_of(out: Tensor) -> str:
    """``probabilities``, ``log-probabilities`` or ``logits`` (anything else)."""
    if bool((out >= 0).all()) and bool(((out.sum(dim=1) - 1).abs() < TOLERANCE).all()):
        return "probabilities"
    if bool((out <= 0).all()) and bool((out.logsumexp(dim=1).abs() < TOLERANCE).all()):
        return "log-probabilities"
    return "logits"


def saturated_share(out: Tensor, kind: str = "logits") -> float:
    """Share of rows whose probabilities (the outputs' softmax unless they are
    probabilities) are exactly 0 on every class but the top one."""
    p = out if kind == "probabilities" else out.softmax(dim=1)
    rest = p.scatter(1, p.argmax(dim=1, keepdim=True), 0.0)
    return (rest == 0).all(dim=1).double().mean().item()


class Log(nn.Module):
    """``log`` of a probability model's outputs, floored at the smallest normal float
    (an exact 0 would give -inf)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        return out.clamp_min(torch.finfo(out.dtype).tiny).log()


class InFloat64(nn.Module):
    """A copy of ``model`` that computes in float64, its outputs cast back to the
    input's type (the gradient flows through the casts)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).double()

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.double()).to(x.dtype)


class Rescale(nn.Module):
    """The model's outputs divided by ``scale``."""

    def __init__(self, model: nn.Module, scale: float) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) / self.scale


def _without_softmax(classifier: nn.Module) -> nn.Module | None:
    """``classifier`` without its final softmax module, when it is a plain Sequential
    (nested ones opened) that ends in one; else None."""
    if type(classifier) is not nn.Sequential or len(classifier) == 0:
        return None
    last = classifier[-1]
    if isinstance(last, nn.Softmax | nn.LogSoftmax):
        return nn.Sequential(*list(classifier)[:-1])
    inner = _without_softmax(last)
    return None if inner is None else nn.Sequential(*list(classifier)[:-1], inner)


def _in_float64(model: nn.Module, x: Tensor) -> nn.Module:
    """``model`` in float64 where its code allows it (a model that builds float32
    tensors of its own may not): as it is otherwise."""
    try:
        wide = InFloat64(model)
        wide(x[:1])
    except (RuntimeError, TypeError):
        return model
    return wide


def logit_view(stages: Stages, x: Tensor) -> tuple[Stages | None, Probe]:
    """The stages with a classifier whose outputs on ``x`` (a few clean points) are
    logits, or None when they already are, and the evidence: what the outputs were and
    what the attacks see instead."""
    with torch.no_grad():
        features = x
        for _, stage in stages.front:
            features = stage(features)
        given = stages.classifier(features)
        kind = kind_of(given)
        share = saturated_share(given, kind)
        classifier, done, wide = stages.classifier, [], None
        stripped = _without_softmax(classifier)
        if kind != "logits" and stripped is not None:
            classifier, done = stripped, ["the logits in front of its final softmax"]
        elif kind != "logits":
            wide = _in_float64(Log(classifier) if kind == "probabilities" else classifier,
                               features)
            if isinstance(wide, InFloat64) or kind == "probabilities":
                classifier = wide
                done = [("the logarithm of its outputs" if kind == "probabilities" else
                         "its outputs") + " in float64" * isinstance(wide, InFloat64)]
        out = classifier(features)
        left = saturated_share(out)
        if left > SHARE_THRESHOLD:
            top = out.topk(2, dim=1).values
            scale = float((top[:, 0] - top[:, 1]).median()) / TARGET_GAP
            if scale > 1:
                classifier = Rescale(classifier, scale)
                done.append(f"{'these' if done else 'its outputs'} divided by {scale:.3g}")
    what = {"probabilities": "probabilities (non-negative rows summing to 1)",
            "log-probabilities": "log-probabilities (rows whose logsumexp is 0)",
            "logits": "logits"}[kind]
    detail = f"the model returns {what}, softmax saturated at {share:.0%} of {len(x)} points"
    if done:
        detail += "; the ladder attacks " + ", ".join(done)
    if share > SHARE_THRESHOLD and kind != "logits" and stripped is None \
            and not isinstance(wide, InFloat64):
        detail += ("; where the model's own outputs saturate, no loss on them has a gradient: "
                   "return logits to attack those points with gradients")
    fired = kind != "logits" or share > SHARE_THRESHOLD
    probe = Probe("outputs", "model", fired, share, SHARE_THRESHOLD, detail)
    return (Stages(stages.front, classifier) if done else None), probe
