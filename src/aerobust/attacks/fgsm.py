"""Fast Gradient Sign Method (Goodfellow et al. 2015): one signed gradient step."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from aerobust.attacks.base import Attack, CountedModel, check_number
from aerobust.attacks.losses import ce


@dataclass(frozen=True)
class FGSM(Attack):
    """``x_adv = clip(x + eps * sign(grad_x CE(model(x), y)), 0, 1)``.

    Costs one forward+backward for the step and one forward to learn which samples the
    step fooled (the one the runner runs on every ``x_adv``: ``_attack`` leaves the
    success mask to it).

    Args:
        eps: the Linf radius in [0,1] units (``20 / 255``).
        eot: forwards averaged per step, for a randomised model (every attack has it).

    Returns:
        ``fgsm(model, x, y, execution=None)`` on a batch in [0,1] returns an ``AttackResult``.

    Example:
        >>> fgsm = aerobust.attacks.FGSM(eps=8 / 255)
        >>> result = fgsm(model, x, y)
        >>> float((result.x_adv - x).abs().max()) <= 8 / 255 + 1e-6
        True
    """

    name = "fgsm"
    eps: float

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self.name, "eps", self.eps, 0.0, 1.0)

    def _attack(
        self, model: CountedModel, x: Tensor, y: Tensor, draws: Tensor | None
    ) -> tuple[Tensor, None]:
        # ``x`` is the caller's detached alias and is never written to: no clone needed.
        g = model.step(x, y, ce).grad
        # ``eps * sign`` is exact in float, so the fused add equals ``x + eps * sign(g)``.
        return torch.add(x, g.sign_(), alpha=self.eps).clamp_(0.0, 1.0), None
