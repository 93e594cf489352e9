"""What an attack returns: the adversarials, whether each fooled the model, their norms
and what they cost in passes (a module of its own: the runner builds it, attacks and
their callers read it)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class AttackResult:
    """What an attack did to one batch.

    ``success[i]`` means the model misclassifies ``x_adv[i]`` (untargeted, against the
    label). ``forwards``/``backwards`` count batched passes through the model (summed
    over the blocks the batch was split into), so the cost of attacks can be compared
    independently of hardware.
    """

    x_adv: Tensor
    success: Tensor
    l2: Tensor
    linf: Tensor
    forwards: int
    backwards: int
