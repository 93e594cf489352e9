"""Auto-PGD in the Linf ball (Croce & Hein 2020), untargeted and targeted (APGD-T)."""

from __future__ import annotations

import functools
import math
from contextlib import nullcontext
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import Tensor

from aerobust.attacks.base import (
    Attack,
    CountedModel,
    batch_view,
    check_bool,
    check_number,
    linf_box,
)
from aerobust.attacks.losses import TARGETED, LossFn, resolve
from aerobust.attacks.pgd import uniform_starts
from aerobust.errors import UserError


def checkpoints(steps: int) -> list[int]:
    """The iterations ``w_j = ceil(p_j * steps)`` (j >= 1) at which APGD may halve a step
    size: ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, kept while
    a step remains after them. Exact fractions: ``0.22 * 100`` in floats is 22.000...04,
    whose ceiling would be 23."""
    before, p = Fraction(0), Fraction(22, 100)
    out: list[int] = []
    while p < 1:
        w = math.ceil(p * steps)
        if 0 < w < steps and (not out or w > out[-1]):
            out.append(w)
        before, p = p, p + max(p - before - Fraction(3, 100), Fraction(6, 100))
    return out


@dataclass(frozen=True)
class APGD(Attack):
    """PGD without a step size to tune: a fixed step is either too small to get anywhere
    or too large to settle, and CE saturates under scaled logits, so plain PGD
    overestimates robustness (Croce & Hein 2020). APGD starts at step ``2 * eps``, adds
    momentum (``momentum`` weighs the new step against the last move; the first step
    has none), and at checkpoints (22%, 41%, 57%, ... of ``steps``) halves a sample's
    step and sends it back to its best point when fewer than a fraction ``rho`` of its
    steps since the last checkpoint raised its loss, or when its loss has not improved
    since a checkpoint that left its step alone (not applied at the first checkpoint,
    as in the authors' code). Everything is per sample. A halved sample's next step has
    no momentum, like a first step.

    ``loss`` names one of ``attacks.losses.LOSSES`` (``ce``; ``dlr``, the paper's
    scale-invariant loss, or ``margin``) or is a callable ``(logits, y) -> per-sample
    loss`` to maximise. ``targeted=True`` is APGD-T: for each of the
    ``n_target_classes`` (at most classes - 1) classes with the highest clean logits
    other than the label, in turn, ``restarts`` runs raise that class with the targeted
    form of the named loss (``losses.TARGETED``; AutoAttack uses ``dlr``), on the
    samples still unfooled. Success is untargeted either way: argmax != y.
    ``first_target`` skips that many of the top classes (targets ranked
    ``first_target + 1`` on), so the top targets and the rest can run as two attacks;
    with no class left to target the attack returns ``x``.

    Per sample, the first iterate that fools the model is kept and the sample leaves the
    batch (later steps cost less; eval mode makes samples independent); a sample never
    fooled keeps the iterate with the highest loss of any run (PGD keeps its last one).
    Restarts re-attack only the unfooled samples. Random starts are uniform in the ball,
    from a CPU generator seeded with ``seed`` at each call, drawn for the whole batch
    before it is split into blocks (restart r's start is the same for every target), so
    results do not depend on the device or block size.

    Cost per run (a restart; in APGD-T a restart for one target), for the samples it
    runs on: ``steps`` forward+backward passes plus one forward for the final iterate,
    i.e. at most ``forwards = runs * (steps + 1)`` and ``backwards = runs * steps``,
    with ``runs = restarts`` untargeted and ``restarts * targets`` plus one clean
    forward (for the targets) in APGD-T; fewer once every sample is fooled. Success at
    each iterate comes from the forward that also yields its gradient. ``eps == 0`` is a
    single forward. With ``eot=k`` every forward is ``k``.
    """

    name = "apgd"
    eps: float
    steps: int = 100
    restarts: int = 1
    loss: str | LossFn = "ce"
    targeted: bool = False
    n_target_classes: int = 9
    first_target: int = 0
    rho: float = 0.75
    momentum: float = 0.75
    seed: int = 0
    random_start: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        resolve(self.name, self.loss)
        check_number(self.name, "eps", self.eps, 0.0, 1.0)
        check_number(self.name, "steps", self.steps, 1, integer=True)
        check_number(self.name, "restarts", self.restarts, 1, integer=True)
        check_bool(self.name, "targeted", self.targeted)
        check_number(self.name, "n_target_classes", self.n_target_classes, 1, integer=True)
        check_number(self.name, "first_target", self.first_target, 0, integer=True)
        check_number(self.name, "rho", self.rho, 0.0, 1.0)
        check_number(self.name, "momentum", self.momentum, 0.0, 1.0)
        check_number(self.name, "seed", self.seed, 0, integer=True)
        check_bool(self.name, "random_start", self.random_start)
        if self.targeted and callable(self.loss):
            raise UserError(f"{self.name}: targeted needs a named loss ({', '.join(TARGETED)}), "
                            f"not a callable")

    def _draws(self, x: Tensor) -> Tensor | None:
        """Each sample's uniform noise for every restart, ``(N, restarts, ...)``, from the
        seeded CPU generator for the whole batch (as PGD's)."""
        if not self.random_start or self.eps == 0:
            return None
        return uniform_starts(x, self.seed, self.restarts)

    def _attack(
        self, model: CountedModel, x: Tensor, y: Tensor, draws: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        if self.eps == 0:
            with torch.no_grad():
                return x.clone(), model(x).argmax(dim=1) != y
        lo, hi = linf_box(x, self.eps)
        if self.targeted:
            with torch.no_grad():
                clean = model(x)
            # The label's logit goes last, so no target is the label itself (which a
            # misclassified sample's (k+1)-th logit could be).
            others = clean.scatter(1, y.unsqueeze(1), -torch.inf)
            if model.rejects:  # nor the reject logit (``aerobust.rejection``)
                others[:, -1] = -torch.inf
            ranked = others.argsort(dim=1, descending=True)
            first, classes = self.first_target, clean.shape[1] - 1 - model.rejects
            targets: list[Tensor | None] = list(
                ranked[:, first:min(first + self.n_target_classes, classes)].T)
            if not targets:
                return x.clone(), clean.argmax(dim=1) != y
        else:
            targets = [None]
        x_adv = x.clone()
        fooled = torch.zeros_like(y, dtype=torch.bool)
        score = torch.full(y.shape, -torch.inf, dtype=x.dtype, device=x.device)
        for target in targets:
            for restart in range(self.restarts):
                todo = (~fooled).nonzero().squeeze(1)
                if todo.numel() == 0:
                    return x_adv, fooled
                start = x[todo]
                if draws is not None:
                    noise = draws[todo.cpu(), restart].to(x.device)
                    start = torch.clamp(start + self.eps * (2 * noise - 1), lo[todo], hi[todo])
                adv, hit, best = self._run(model, start, y[todo], lo[todo], hi[todo],
                                           None if target is None else target[todo])
                # Fooled: its first fooling iterate; else the highest loss of any run.
                better = hit | (best > score[todo])
                x_adv[todo[better]] = adv[better]
                score[todo] = torch.where(better, best, score[todo])
                fooled[todo] = hit
        return x_adv, fooled

    def _run(
        self,
        model: CountedModel,
        current: Tensor,
        y: Tensor,
        lo: Tensor,
        hi: Tensor,
        target: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One run of ``steps`` steps from ``current``; returns each sample's kept iterate
        (its first fooling one, else its best), whether it fools, and its best loss.

        A fooled sample leaves the batch: every per-sample state tensor is cut to the
        rows still attacked, ``rows`` mapping them back to the run's samples.
        """
        n = len(y)
        adv = torch.empty_like(current)
        fooled = torch.zeros(n, dtype=torch.bool, device=y.device)
        best_loss = torch.full((n,), torch.inf, dtype=current.dtype, device=current.device)
        rows = torch.arange(n, device=y.device)
        at = set(checkpoints(self.steps))
        named = None if target is None else TARGETED[str(self.loss).lower()]
        plain = resolve(self.name, self.loss)
        eta = torch.full((n,), 2 * self.eps, dtype=current.dtype, device=current.device)
        last_check = 0
        # Filled at step 0: the previous iterate, the best point, its loss and gradient
        # sign, the loss of the point last stepped from, the count of loss increases
        # since the last checkpoint, whether the last checkpoint halved, the best loss then.
        prev = best = best_grad = prev_loss = best_now = ups = halved = best_then = None
        for step in range(self.steps + 1):
            final = step == self.steps
            loss_fn = plain if named is None else functools.partial(named, target=target)
            with torch.no_grad() if final else nullcontext():
                out = model.step(current, y, loss_fn)
            loss, newly = out.loss, out.fooled
            if step == 0:
                best, prev_loss, best_now, best_then = current, loss, loss, loss
                ups = torch.zeros_like(eta)
                halved = torch.ones_like(newly)  # no "stalled" check at the first checkpoint
            else:
                ups += loss > prev_loss
                improved = loss > best_now
                best = torch.where(batch_view(improved, current), current, best)
                best_now = torch.where(improved, loss, best_now)
            if final:
                fooled[rows] = newly
                adv[rows] = torch.where(batch_view(newly, current), current, best)
                best_loss[rows] = best_now
                return adv, fooled, best_loss
            any_fooled = bool(newly.any())
            if any_fooled:  # these rows keep this iterate
                done = rows[newly]
                adv[done] = current.detach()[newly]
                fooled[done] = True
                if bool(newly.all()):
                    return adv, fooled, best_loss
            grad = out.grad.sign_()
            best_grad = grad if step == 0 else torch.where(batch_view(improved, grad), grad,
                                                           best_grad)
            if any_fooled:  # ... and leave the batch
                still = ~newly
                (current, y, lo, hi, rows, target, prev, best, best_grad, grad, loss,
                 best_now, ups, halved, best_then, eta) = (
                    None if t is None else t[still] for t in (
                        current.detach(), y, lo, hi, rows, target, prev, best, best_grad, grad,
                        loss, best_now, ups, halved, best_then, eta))
            with torch.no_grad():
                current = current.detach()
                prev_loss = loss
                # The weight of the new step against the last move: none at first.
                weight: float | Tensor = 1.0 if step == 0 else self.momentum
                if step in at:
                    oscillating = ups < self.rho * (step - last_check)
                    stalled = ~halved & (best_now <= best_then)
                    halve = oscillating | stalled
                    eta = torch.where(halve, eta / 2, eta)
                    back = batch_view(halve, current)
                    current = torch.where(back, best, current)
                    grad = torch.where(back, best_grad, grad)
                    prev_loss = torch.where(halve, best_now, loss)
                    # A sample sent back takes a first step again, without momentum.
                    weight = torch.where(back, 1.0, self.momentum).to(current.dtype)
                    halved, best_then, last_check = halve, best_now, step
                    ups = torch.zeros_like(ups)
                z = (current + batch_view(eta, grad) * grad).clamp_(lo, hi)
                # x + w (z - x) + (1 - w)(x - prev) = lerp(2x - prev, z, w)
                moved = z if step == 0 else torch.lerp(current - prev + current, z, weight)
                prev, current = current, moved.clamp_(lo, hi)
        raise AssertionError("unreachable")
