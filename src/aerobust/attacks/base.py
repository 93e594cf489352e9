"""The one interface every attack implements, its result, and the shared plumbing.

An attack is a frozen dataclass: its fields are its whole configuration (validated in
``__post_init__``), so it is stateless, hashable and can be recorded as ``params()``
beside the results it produced. Calling it runs the attack on one batch, under an
execution policy that is not part of it (``runner``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from aerobust.attacks.losses import describe
from aerobust.errors import UserError
from aerobust.rejection import fooled as wrong_class
from aerobust.rejection import rejects

if TYPE_CHECKING:
    from aerobust.attacks.runner import Execution


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


class Step:
    """One evaluation of a loss at an input (see ``CountedModel.step``): ``logits``
    (N, C; the mean over the draws of a randomised model), per-sample ``loss`` (the mean
    over the draws), ``fooled`` (argmax != y; a majority of the draws with EOT), and
    ``grad``, the input gradient of the summed loss, computed (and counted) only when
    read: an attack that learns from the forward that every sample is fooled skips it.
    """

    def __init__(self, model: CountedModel, x_var: Tensor, total: Tensor, logits: Tensor,
                 loss: Tensor, fooled: Tensor) -> None:
        self._model, self._x_var, self._total = model, x_var, total
        self.logits, self.loss, self.fooled = logits, loss, fooled

    @functools.cached_property
    def grad(self) -> Tensor:
        grad = self._model.grad(self._total, self._x_var)
        del self._total  # frees the graph
        return grad


class CountedModel:
    """The attacked model with a tally of batched passes.

    Attacks only reach the model through this wrapper, so the counts in
    ``AttackResult`` are measured rather than estimated. It is also where Expectation
    over Transformation lives (Athalye et al. 2018): with ``draws = k > 1`` the model is
    random, every forward is ``k`` forwards (counted as ``k`` passes), ``step`` averages
    the loss and its gradient over them, ``__call__`` returns the mean logits, and a
    sample counts fooled when a majority of the draws misclassify it.
    """

    def __init__(self, model: nn.Module, draws: int = 1) -> None:
        self.model = model
        self.draws = draws
        self.rejects = rejects(model)  # a rejected input is not fooled (``rejection``)
        self.forwards = 0
        self.backwards = 0

    def __call__(self, x: Tensor) -> Tensor:
        self.forwards += self.draws
        if self.draws == 1:
            return self.model(x)
        return torch.stack([self.model(x) for _ in range(self.draws)]).mean(dim=0)

    def grad(self, output: Tensor, inputs: Tensor, retain_graph: bool = False) -> Tensor:
        """Gradient of a scalar ``output`` w.r.t. the input only (never the parameters);
        zero where the model's output does not depend on the input through autograd, as
        a defense run under ``no_grad`` makes it: gradient attacks then fail, as they
        would, and the audit's probes say why."""
        self.backwards += 1
        if not output.requires_grad:  # the model cut x off its graph (no_grad, detach)
            return torch.zeros_like(inputs)
        (g,) = torch.autograd.grad(output, inputs, retain_graph=retain_graph, allow_unused=True)
        return torch.zeros_like(inputs) if g is None else g

    def step(self, x: Tensor, y: Tensor, loss: Callable[[Tensor, Tensor], Tensor]) -> Step:
        """Per-sample ``loss(logits, y)`` at ``x`` and its input gradient, averaged over
        the draws: k separate forwards (a defense may draw its randomness once per call)
        and, when ``grad`` is read, one backward through all of them."""
        x_var = x.detach().requires_grad_(True)
        outs = [self.model(x_var) for _ in range(self.draws)]
        self.forwards += self.draws
        losses = torch.stack([loss(out, y) for out in outs])
        total = losses.sum() / self.draws if self.draws > 1 else losses.sum()
        with torch.no_grad():
            wrong = torch.stack([wrong_class(out, y, self.rejects) for out in outs])
            fooled = wrong[0] if self.draws == 1 else 2 * wrong.sum(dim=0) > self.draws
            logits = outs[0] if self.draws == 1 else torch.stack(outs).mean(dim=0)
        return Step(self, x_var, total, logits.detach(), losses.detach().mean(dim=0), fooled)

    @torch.no_grad()
    def fooled(self, x: Tensor, y: Tensor) -> Tensor:
        """Whether ``x`` is misclassified: by a majority of the draws with EOT."""
        self.forwards += self.draws
        wrong = sum(wrong_class(self.model(x), y, self.rejects).int()
                    for _ in range(self.draws))
        return 2 * wrong > self.draws


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


def linf_box(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Per pixel, the lowest and highest value the Linf ball of radius ``eps`` around
    ``x`` allows inside the image range [0,1]: every projection clamps to these."""
    return (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)


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
        from aerobust.attacks.runner import run  # the runner imports this module

        return run(self, model, x, y, execution)

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
