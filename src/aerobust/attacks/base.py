"""The one interface every attack implements, and the tensor helpers attacks share.

An attack is a frozen dataclass: its fields are its whole configuration (validated in
``__post_init__``), so it is stateless, hashable and can be recorded as ``params()``
beside the results it produced. Calling it runs the attack on one batch, under an
execution policy that is not part of it (``runner``).

The primitives below both this interface and the runner (``result.AttackResult``, the
counted model and ``attack_mode`` in ``model``, the checks in ``checks``) are
re-exported here, where attack files import them from.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from aerobust.attacks import runner
from aerobust.attacks.checks import check_bool, check_number
from aerobust.attacks.losses import describe
from aerobust.attacks.model import CountedModel, attack_mode
from aerobust.attacks.result import AttackResult
from aerobust.attacks.runner import Execution

__all__ = ["Attack", "AttackResult", "CountedModel", "attack_mode", "batch_view",
           "check_bool", "check_number", "linf_box"]


def linf_box(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Per pixel, the lowest and highest value the Linf ball of radius ``eps`` around
    ``x`` allows inside the image range [0,1]: every projection clamps to these."""
    return (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)


def batch_view(mask: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample vector so it broadcasts over the sample dimensions of ``like``."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


@dataclass(frozen=True)
class Attack(ABC):
    """An untargeted white-box attack in [0,1] pixel space: ``attack(model, x, y)``.

    A subclass holds its algorithm only: ``_attack`` on one block, and ``_draws`` for
    the random numbers it needs. How it runs (blocks, NHWC, the success check) is the
    caller's ``Execution``, applied by ``runner.run``, which calls these two hooks.

    ``eot`` (Expectation over Transformation) attacks a randomised model: every forward
    becomes ``eot`` forwards, gradients and losses are averaged over them (the mean
    logits where an attack reads logits itself, as CW and DeepFool do), and success,
    here and in the final check, is a majority of fresh draws (``CountedModel``). It
    changes what is attacked, so it is the attack's, not the execution's.
    """

    name: ClassVar[str]
    eot: int = field(default=1, kw_only=True)

    def __post_init__(self) -> None:
        check_number(self.name, "eot", self.eot, 1, integer=True)

    def params(self) -> dict[str, Any]:
        """The full configuration, defaults resolved, for recording beside results (an
        injected callable is recorded by its qualified name)."""
        return {f.name: describe(getattr(self, f.name)) if callable(getattr(self, f.name))
                else getattr(self, f.name) for f in dataclasses.fields(self)}

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor,
                 execution: Execution | None = None) -> AttackResult:
        """Attack the batch ``x`` (N,...) in [0,1] with labels ``y`` (N,) on x's device,
        under ``execution`` (the default policy when None); see ``runner.run``."""
        return runner.run(self, model, x, y, execution)

    def _draws(self, x: Tensor) -> Tensor | None:
        """Random numbers for the whole call, one row per sample, drawn before the batch
        is split, so that no sample's draw depends on the block it lands in; ``_attack``
        gets its block's rows. None: the attack draws none."""
        return None

    @abstractmethod
    def _attack(
        self, model: CountedModel, x: Tensor, y: Tensor, draws: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """Return ``(x_adv, success)`` for one block, without per-sample loops; success
        None: decided by one forward of ``x_adv`` after the attack (as the runner's
        channels_last check does anyway)."""
