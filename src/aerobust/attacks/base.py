"""The one interface every attack implements, its result, and the shared plumbing.

An attack is a frozen dataclass: its fields are its whole configuration (validated in
``__post_init__``), so it is stateless, hashable and can be recorded as ``params()``
beside the results it produced. Calling it runs the attack on one batch.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from aerobust.errors import UserError


@dataclass
class AttackResult:
    """What an attack did to one batch.

    ``success[i]`` means the model misclassifies ``x_adv[i]`` (untargeted, against the
    label). ``forwards``/``backwards`` count batched passes through the model, so the
    cost of attacks can be compared independently of hardware.
    """

    x_adv: Tensor
    success: Tensor
    l2: Tensor
    linf: Tensor
    forwards: int
    backwards: int


class CountedModel:
    """The attacked model with a tally of batched passes.

    Attacks only reach the model through this wrapper, so the counts in
    ``AttackResult`` are measured rather than estimated.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.forwards = 0
        self.backwards = 0

    def __call__(self, x: Tensor) -> Tensor:
        self.forwards += 1
        return self.model(x)

    def grad(self, output: Tensor, inputs: Tensor, retain_graph: bool = False) -> Tensor:
        """Gradient of a scalar ``output`` w.r.t. the input only (never the parameters)."""
        self.backwards += 1
        (g,) = torch.autograd.grad(output, inputs, retain_graph=retain_graph)
        return g


@contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters for the duration of an attack.

    Train-mode dropout or batch norm would make the attacked function random and let it
    drift (running statistics), and parameter gradients cost memory for nothing. Each
    module's ``training`` flag and each parameter's ``requires_grad`` are restored
    exactly, also when the attack raises, so attacking mid-training is harmless.
    """
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    # Only flags that differ are written (``nn.Module.__setattr__`` is slow, and this
    # runs on every batch): a model already in eval mode, frozen, is left untouched.
    try:
        if any(mode for _, mode in modes):
            model.eval()
        for param, flag in flags:
            if flag:
                param.requires_grad_(False)
        yield model
    finally:
        for module, mode in modes:
            if module.training != mode:
                module.training = mode
        for param, flag in flags:
            if param.requires_grad != flag:
                param.requires_grad_(flag)


def batch_view(mask: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample vector so it broadcasts over the sample dimensions of ``like``."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


def check_number(
    attack: str,
    name: str,
    value: object,
    low: float,
    high: float = math.inf,
    *,
    integer: bool = False,
    low_open: bool = False,
) -> None:
    """Raise a one-line ``UserError`` unless ``low <= value <= high`` (``low < value`` if open)."""
    kind = "an integer" if integer else "a number"
    types = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, types) or not math.isfinite(value):
        raise UserError(f"{attack}: {name} must be {kind}, got {value!r}")
    if (value <= low if low_open else value < low) or value > high:
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{']' if math.isfinite(high) else ')'}"
        raise UserError(f"{attack}: {name} must be in {span}, got {value!r}{_hint(name, value)}")


def check_bool(attack: str, name: str, value: object) -> None:
    """Raise a one-line ``UserError`` unless ``value`` is a bool (not just truthy)."""
    if not isinstance(value, bool):
        raise UserError(f"{attack}: {name} must be true or false, got {value!r}")


def _hint(name: str, value: object) -> str:
    """Epsilons above 1 are almost always given in 0-255 units by mistake."""
    if name == "eps" and isinstance(value, (int, float)) and 1 < value <= 255:
        return f" (attacks use [0,1] pixel units: did you mean {value}/255 = {value / 255:.4g}?)"
    return ""


@dataclass(frozen=True)
class Attack(ABC):
    """An untargeted white-box attack in [0,1] pixel space: ``attack(model, x, y)``."""

    name: ClassVar[str]

    def params(self) -> dict[str, Any]:
        """The full configuration, defaults resolved, for recording beside results."""
        return dataclasses.asdict(self)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        """Attack the batch ``x`` (N,...) in [0,1] with labels ``y`` (N,) on x's device."""
        y = _check_inputs(self.name, x, y)
        counted = CountedModel(model)
        with attack_mode(model), torch.enable_grad():
            x_adv, success = self._attack(counted, x.detach(), y)
        delta = (x_adv - x).flatten(1)
        return AttackResult(
            x_adv=x_adv.detach(),
            success=success.detach(),
            l2=delta.norm(dim=1),
            linf=delta.abs().amax(dim=1),
            forwards=counted.forwards,
            backwards=counted.backwards,
        )

    @abstractmethod
    def _attack(self, model: CountedModel, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(x_adv, success)`` for the whole batch, without per-sample loops."""


def _check_inputs(attack: str, x: Tensor, y: Tensor) -> Tensor:
    """Catch the mistakes that would otherwise give silently wrong numbers."""
    if not torch.is_floating_point(x) or x.dim() < 2:
        raise UserError(
            f"{attack}: x must be a float batch (N, ...), got {x.dtype} {tuple(x.shape)}"
        )
    if y.shape != (x.shape[0],) or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise UserError(
            f"{attack}: y must be integer labels of shape ({x.shape[0]},), "
            f"got {y.dtype} {tuple(y.shape)}"
        )
    if x.numel():
        # One pass for both extremes and one host sync (a check per call, on every batch).
        low, high = torch.aminmax(x)
        if bool((low < 0) | (high > 1)):
            raise UserError(
                f"{attack}: x must lie in [0,1] (normalisation belongs inside the model), "
                f"got [{low.item():.4g}, {high.item():.4g}]"
            )
    return y.to(device=x.device, dtype=torch.long)
