"""Cheap probes that run before any attack and say where gradients may be broken.

Each probe measures one symptom of gradient masking named in the literature (Athalye
et al. 2018; Carlini et al. 2019; Pintor et al. 2022) on a few clean points and names
the part of the model it suspects: the whole model, its classifier, or one
shape-preserving stage in front of it. Probes decide nothing alone: they choose which
adaptive attacks the ladder adds (BPDA through a flagged stage, EOT for a random model)
and are listed as evidence beside the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from aerobust.attacks.losses import ce, margin
from aerobust.audit.stages import Stages

# A share of points above this fires the gradient and saturation probes.
SHARE_THRESHOLD = 0.1
# Autograd's linear prediction of a change against the change itself (cosine over all
# points and directions): below this the gradient does not describe the function.
AGREEMENT_THRESHOLD = 0.5
FD_STEP = 1e-3  # Linf size of the finite-difference steps


@dataclass(frozen=True)
class Probe:
    """One measurement: ``fired`` when ``value`` crosses ``threshold``."""

    name: str
    target: str  # "model", "classifier" or a stage's name
    fired: bool
    value: float
    threshold: float
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seeded(fn: Callable[[Tensor], Tensor], x: Tensor, seed: int) -> Tensor:
    """``fn(x)`` with torch's RNG fixed: a random stage then draws the same noise for
    two nearby inputs, so finite differences measure the function, not the noise."""
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        return fn(x)


def _input_grad(fn: Callable[[Tensor], Tensor], x: Tensor, seed: int) -> Tensor:
    """d sum(fn(x)) / dx per point; zeros where the output does not depend on x through
    autograd at all (a stage run under ``no_grad`` or detached)."""
    x_var = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = _seeded(fn, x_var, seed)
        if not out.requires_grad:
            return torch.zeros_like(x)
        (g,) = torch.autograd.grad(out.sum(), x_var, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def _gradient(target: str, fn: Callable[[Tensor], Tensor], x: Tensor, what: str) -> Probe:
    """Share of points whose input gradient is zero, not finite, or vanishing."""
    g = _input_grad(fn, x, seed=0).flatten(1)
    finite = torch.isfinite(g).all(dim=1)
    size = g.abs().amax(dim=1)
    zero = finite & (size == 0)
    vanishing = finite & (size > 0) & (size < 1e-12)
    bad = (~finite | zero | vanishing).double().mean().item()
    return Probe("gradient", target, bad > SHARE_THRESHOLD, bad, SHARE_THRESHOLD,
                 f"input gradient of {what}: {int(zero.sum())} zero, {int((~finite).sum())} "
                 f"not finite, {int(vanishing.sum())} vanishing of {len(g)} points")


def _finite_differences(target: str, fn: Callable[[Tensor], Tensor], x: Tensor, h: float,
                        directions: int, what: str) -> Probe:
    """Autograd's prediction ``<grad, delta>`` of the change of ``fn`` against the change
    itself, along random sign directions of Linf size ``h``, inside [0,1]."""
    g = _input_grad(fn, x, seed=0)
    gen = torch.Generator().manual_seed(0)
    predicted, actual = [], []
    with torch.no_grad():
        base = _seeded(fn, x, 0)
        for _ in range(directions):
            d = torch.randint(0, 2, x.shape, generator=gen).to(x) * 2 - 1
            moved = (x + h * d).clamp(0, 1)
            delta = moved - x
            predicted.append((g * delta).flatten(1).sum(dim=1))
            actual.append(_seeded(fn, moved, 0) - base)
    p, a = torch.cat(predicted).double(), torch.cat(actual).double()
    if not (torch.isfinite(p).all() and torch.isfinite(a).all()):
        cosine = 0.0
    elif a.norm() == 0:  # the function does not move at this scale: nothing to compare
        cosine = 1.0
    else:
        cosine = float((p @ a) / (p.norm() * a.norm())) if p.norm() > 0 else 0.0
    return Probe("finite-differences", target, cosine < AGREEMENT_THRESHOLD, cosine,
                 AGREEMENT_THRESHOLD,
                 f"cosine between autograd's predicted and the measured change of {what} "
                 f"over {directions} random sign directions of size {h:.3g}")


def _randomness(target: str, fn: Callable[[Tensor], Tensor], x: Tensor,
                predictions: bool) -> Probe:
    """Two forwards of the same input: any difference means the part is random."""
    with torch.no_grad():
        first, second = fn(x), fn(x)
    if predictions:
        value = (first.argmax(dim=1) != second.argmax(dim=1)).double().mean().item()
        moved = bool((first != second).any())
        detail = (f"two forwards of the same {len(x)} points: outputs differ, {value:.1%} of "
                  "predictions change" if moved else "two forwards give identical outputs")
    else:
        value = float((first - second).abs().max()) if first.numel() else 0.0
        moved = value > 0
        detail = f"two forwards of the same {len(x)} points differ by at most {value:.3g}"
    return Probe("randomness", target, moved, value, 0.0, detail)


def _saturation(target: str, logits: Tensor) -> Probe:
    """Share of points whose softmax puts exactly 0 (in the model's float type) on every
    class but the top one: cross-entropy's gradient then vanishes there."""
    p = logits.softmax(dim=1)
    top = p.argmax(dim=1, keepdim=True)
    rest = p.scatter(1, top, 0.0)
    share = (rest == 0).all(dim=1).double().mean().item()
    return Probe("saturation", target, share > SHARE_THRESHOLD, share, SHARE_THRESHOLD,
                 f"softmax saturated (all other classes exactly 0) at {share:.1%} of "
                 f"{len(logits)} points")


def train_mode(model: nn.Module) -> Probe:
    """Modules left in train mode (dropout, batch norm) in the model as given. Attacks
    and the audit run it in eval mode; a defense that relies on train-mode randomness
    is then audited without it, which the report must say."""
    names = [name or type(model).__name__ for name, m in model.named_modules()
             if m.training and isinstance(m, nn.modules.dropout._DropoutNd
                                          | nn.modules.batchnorm._BatchNorm)]
    any_train = any(m.training for m in model.modules())
    detail = ("dropout or batch norm in train mode: " + ", ".join(names[:5])
              if names else "modules in train mode (no dropout or batch norm)" if any_train
              else "every module in eval mode")
    return Probe("train-mode", "model", bool(names), float(len(names)), 0.0,
                 detail + "; audited in eval mode" if any_train else detail)


def run_probes(model: nn.Module, stages: Stages, x: Tensor, y: Tensor, eps: float,
               directions: int = 8, norm: str = "Linf") -> list[Probe]:
    """Every probe on the points ``x`` (a few dozen suffice), model in eval mode; ``eps``
    is a radius in ``norm``."""
    # Small enough that a smooth network is close to linear (an AE-C on digits: cosine
    # 0.83 at 1e-3, 0.50 at 1/64), large enough for float32 and to cross the steps of a
    # quantiser somewhere among the pixels; a sign direction of Linf size h is at most
    # half the eps-ball in its norm (its L2 size is h * sqrt(pixels), its L1 size h *
    # pixels).
    pixels = x[0].numel()
    span = 1.0 if norm == "Linf" else math.sqrt(pixels) if norm == "L2" else float(pixels)
    h = min(FD_STEP, eps / 2 / span) if eps > 0 else FD_STEP
    probes = [
        _gradient("model", lambda v: ce(model(v), y), x, "the cross-entropy loss"),
        _gradient("model", lambda v: margin(model(v), y), x, "the logit margin"),
        _finite_differences("model", lambda v: margin(model(v), y), x, h, directions,
                            "the logit margin"),
        _randomness("model", model, x, predictions=True),
    ]
    with torch.no_grad():
        probes.append(_saturation("classifier" if stages.front else "model", model(x)))
    probe_input = x
    for name, stage in stages.front:
        with torch.no_grad():
            out = stage(probe_input)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out)

        def projected(v: Tensor, stage: nn.Module = stage, w: Tensor = weights) -> Tensor:
            return (stage(v) * w).flatten(1).sum(dim=1)

        what = f"a random projection of {name}'s output"
        probes += [_gradient(name, projected, probe_input, what),
                   _finite_differences(name, projected, probe_input, h, directions, what),
                   _randomness(name, stage, probe_input, predictions=False)]
        probe_input = out
    return probes


def flagged_stages(probes: list[Probe], stages: Stages) -> list[str]:
    """Front stages whose gradient or finite-difference probe fired: BPDA goes there."""
    return [name for name in stages.names
            if any(p.fired and p.target == name and p.name in ("gradient", "finite-differences")
                   for p in probes)]


def is_random(probes: list[Probe]) -> bool:
    return any(p.fired and p.name == "randomness" for p in probes)
