"""Fast Gradient Sign Method (Goodfellow et al. 2015): one signed gradient step."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from aerobust.attacks.base import Attack, CountedModel, check_bool, check_number
from aerobust.attacks.losses import ce


@dataclass(frozen=True)
class FGSM(Attack):
    """``x_adv = clip(x + eps * sign(grad_x CE(model(x), y)), 0, 1)``.

    ``clip=False`` leaves out the clip to [0,1], as some implementations of the paper's
    era did: ``x_adv`` can then leave the image range (an invalid image that may fool
    the model more easily); the sensitivity experiment measures what that changes.

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
    clip: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self.name, "eps", self.eps, 0.0, 1.0)
        check_bool(self.name, "clip", self.clip)

    def _attack(
        self, model: CountedModel, x: Tensor, y: Tensor, draws: Tensor | None
    ) -> tuple[Tensor, None]:
        # ``x`` is the caller's detached alias and is never written to: no clone needed.
        g = model.step(x, y, ce).grad
        # ``eps * sign`` is exact in float, so the fused add equals ``x + eps * sign(g)``.
        stepped = torch.add(x, g.sign_(), alpha=self.eps)
        return (stepped.clamp_(0.0, 1.0) if self.clip else stepped), None
