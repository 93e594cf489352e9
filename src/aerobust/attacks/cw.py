"""Carlini & Wagner (2017) L2 attack, following the authors' reference implementation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from aerobust.attacks.base import Attack, CountedModel, batch_view, check_bool, check_number
from aerobust.errors import UserError
from aerobust.rejection import fooled as wrong_class

# A constant with no upper bound yet keeps this; below it the search bisects.
_NO_UPPER = 1e10
ON_FAILURE = ("clean", "last")


@dataclass(frozen=True)
class CW(Attack):
    """Minimise ``||x_adv - x||_2^2 + c * max(Z_y - max_{j!=y} Z_j, -confidence)``.

    ``x_adv = (tanh(w) + 1) / 2`` keeps every iterate in [0,1] without clipping. For each
    of ``binary_steps`` values of the per-sample constant ``c`` (starting at ``c_init``),
    Adam (re-initialised, learning rate ``lr``) runs up to ``steps`` iterations; with
    ``abort_early`` a run stops once the total loss fell by no more than 0.01% over the
    last ``steps // 10`` iterations. ``c`` then moves as in the reference: halfway to the
    lower bound after a success, halfway to the upper bound (or x10 while there is none)
    after a failure. The smallest-L2 adversarial seen at any iteration is kept; a sample
    never fooled keeps its original input (``on_failure="clean"``, the reference's
    choice) or gets the search's last iterate (``on_failure="last"``, the last image
    Adam reached in the last binary-search step; still counted unfooled, as no iterate
    fooled the model, but its distance is that of the image returned).

    Cost: one forward+backward per iteration, at most ``binary_steps * steps`` of each.

    Args:
        confidence: the logit margin a success must reach (kappa).
        c_init: the first value of the constant ``c``.
        binary_steps: values of ``c`` tried per sample.
        steps: Adam iterations per value of ``c``.
        lr: Adam's learning rate (the reference's 0.01 is made for long runs).
        abort_early: stop a run once its loss stops falling.
        eot: forwards averaged per step, for a randomised model (every attack has it).

    Returns:
        ``cw(model, x, y, execution=None)`` on a batch in [0,1] returns an ``AttackResult``.

    Example:
        >>> cw = aerobust.attacks.CW(binary_steps=2, steps=20)
        >>> result = cw(model, x, y)
        >>> result.l2.shape
        torch.Size([8])
    """

    name = "cw"
    confidence: float = 0.0
    c_init: float = 1e-3
    binary_steps: int = 9
    steps: int = 1000
    lr: float = 0.01
    abort_early: bool = True
    on_failure: str = "clean"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self.name, "confidence", self.confidence, 0.0)
        check_number(self.name, "c_init", self.c_init, 0.0, low_open=True)
        check_number(self.name, "binary_steps", self.binary_steps, 1, integer=True)
        check_number(self.name, "steps", self.steps, 1, integer=True)
        check_number(self.name, "lr", self.lr, 0.0, low_open=True)
        check_bool(self.name, "abort_early", self.abort_early)
        if self.on_failure not in ON_FAILURE:
            raise UserError(f"{self.name}: on_failure must be one of {', '.join(ON_FAILURE)}, "
                            f"got {self.on_failure!r}")

    def _attack(
        self, model: CountedModel, x: Tensor, y: Tensor, draws: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        # Shrink by 1e-6 so that pixels at exactly 0 or 1 have a finite preimage.
        w_clean = torch.atanh((2 * x - 1) * (1 - 1e-6))
        c = torch.full_like(y, self.c_init, dtype=x.dtype)
        lower = torch.zeros_like(c)
        upper = torch.full_like(c, _NO_UPPER)
        best_sq = torch.full_like(c, torch.inf)
        best_adv = x.clone()
        last = x
        for _ in range(self.binary_steps):
            fooled, best_sq, best_adv, last = self._minimise(model, x, y, w_clean, c, best_sq,
                                                             best_adv)
            upper = torch.where(fooled, torch.minimum(upper, c), upper)
            lower = torch.where(fooled, lower, torch.maximum(lower, c))
            c = torch.where(upper < _NO_UPPER, (lower + upper) / 2, c * 10)
        found = best_sq < torch.inf
        if self.on_failure == "last":
            best_adv = torch.where(batch_view(found, x), best_adv, last)
        return best_adv, found

    def _minimise(
        self,
        model: CountedModel,
        x: Tensor,
        y: Tensor,
        w_clean: Tensor,
        c: Tensor,
        best_sq: Tensor,
        best_adv: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One binary-search step at constants ``c``: returns which samples were fooled
        during it, the updated best (squared L2, adversarial) per sample and the last
        iterate it scored."""
        w = w_clean.clone()
        adam = _Adam(w, self.lr)
        label = y.unsqueeze(1)
        fooled = torch.zeros_like(y, dtype=torch.bool)
        check_every = max(1, self.steps // 10)
        previous = torch.inf
        for step in range(self.steps):
            w_var = w.detach().requires_grad_(True)
            x_adv = (torch.tanh(w_var) + 1) / 2
            logits = model(x_adv)
            true_logit = logits.gather(1, label).squeeze(1)
            classes = logits[:, :-1] if model.rejects else logits
            other = classes.scatter(1, label, -torch.inf).amax(dim=1)
            # Against a detector the point to beat is the true class or the reject
            # logit, whichever is higher (``rejection.detector_margin``): a rejected
            # iterate is no success.
            held = torch.maximum(true_logit, logits[:, -1]) if model.rejects else true_logit
            margin = torch.clamp(held - other, min=-self.confidence)
            l2 = (x_adv - x).flatten(1).square().sum(dim=1)
            loss = l2.sum() + (c * margin).sum()
            grad = model.grad(loss, w_var)

            # These logits belong to this iterate: book it before Adam moves on. Fooled
            # means argmax != y once the true logit is raised by the confidence, as in
            # the reference (so ties resolve exactly like a plain prediction); with no
            # confidence the raised logits are the logits themselves. A rejected iterate
            # is not fooled (``aerobust.rejection``).
            with torch.no_grad():
                raised = logits
                if self.confidence:
                    raised = logits.scatter(1, label, (true_logit + self.confidence)[:, None])
                hit = wrong_class(raised, y, model.rejects)
                better = hit & (l2 < best_sq)
                best_sq = torch.where(better, l2, best_sq)
                # In place: ``best_adv`` is ours (a clone of x), and this runs every step.
                torch.where(batch_view(better, x), x_adv, best_adv, out=best_adv)
                fooled |= hit
                last = x_adv.detach()
            if self.abort_early and step % check_every == 0:
                total = loss.item()
                if step > 0 and total > previous - 1e-4 * abs(previous):
                    break
                previous = total
            adam.step(grad)
        return fooled, best_sq, best_adv, last


class _Adam:
    """Adam (Kingma & Ba 2015, PyTorch's defaults) on one tensor, updated in place.

    A fresh instance per binary-search step is the reference's reset. Written out
    because it is a few lines, and ``torch.optim`` imports ``torch._dynamo`` on first
    use, which costs seconds.
    """

    def __init__(self, param: Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)
        self.t = 0

    @torch.no_grad()
    def step(self, grad: Tensor) -> None:
        beta1, beta2 = self.betas
        self.t += 1
        self.m.mul_(beta1).add_(grad, alpha=1 - beta1)
        self.v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (self.v / (1 - beta2**self.t)).sqrt_().add_(self.eps)
        self.param.addcdiv_(self.m, denom, value=-self.lr / (1 - beta1**self.t))
