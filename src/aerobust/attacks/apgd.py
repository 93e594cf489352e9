"""Auto-PGD (Croce & Hein 2020), untargeted and targeted (APGD-T), in the Linf and L2
balls, and L1-APGD with its sparse steps (Croce & Hein 2021)."""

from __future__ import annotations

import functools
import math
from contextlib import nullcontext
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import Tensor

from aerobust.attacks import norms
from aerobust.attacks.base import (
    Attack,
    CountedModel,
    batch_view,
    check_bool,
    check_number,
    linf_box,
)
from aerobust.attacks.losses import TARGETED, LossFn, resolve
from aerobust.attacks.pgd import random_starts
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


def l1_checks(steps: int) -> list[int]:
    """L1-APGD's checkpoints: every ``max(int(0.04 * steps), 1)`` iterations, as the
    authors' code places them."""
    every = max(int(0.04 * steps), 1)
    return list(range(every, steps, every))


def target_classes(clean: Tensor, y: Tensor, first: int, count: int,
                   rejects: bool = False) -> Tensor:
    """Per sample, the classes ranked ``first + 1`` to ``first + count`` by clean logit
    among those other than the label, as (targets, N) rows (fewer where the classes run
    out). The label's logit goes last, so no target is the label itself (which a
    misclassified sample's (k+1)-th logit could be); nor, for a model that rejects, is
    the reject logit (``aerobust.rejection``)."""
    others = clean.scatter(1, y.unsqueeze(1), -torch.inf)
    if rejects:
        others[:, -1] = -torch.inf
    ranked = others.argsort(dim=1, descending=True)
    return ranked[:, first:min(first + count, clean.shape[1] - 1 - rejects)].T


def _rows(t: Tensor | None, index: Tensor) -> Tensor | None:
    return None if t is None else t[index]


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
    With EOT (``eot > 1``) the loss and the verdict of every step are estimates from a
    few draws, and both rules above act on their noise: a sample judged fooled by one
    step's majority is often just over the boundary, where fresh draws disagree, so
    every sample stays in the batch to the last step and keeps its latest iterate that
    a step's majority judged fooled (else its best); and at a checkpoint a halved
    sample keeps its place instead of going back to the point of its highest estimated
    loss, which is mostly the luckiest draw. (On a random resize-and-pad defense of
    digits, 100 points, eps 0.1, EOT 8 x 50 steps: 32% robust before, 27% after.)
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

    ``norm`` is the threat model (``attacks.norms``; ``eps`` in [0,1] pixel units for
    every norm). ``"L2"``: the same algorithm with the gradient normalised to unit L2
    length instead of its sign, each iterate pulled into the L2 ball then clamped to
    [0,1], and random starts on the sphere of radius ``eps``. ``"L1"`` is L1-APGD (Croce
    & Hein 2021): a step moves the top ``share`` of coordinates by gradient magnitude
    (their signs, L1 length ``eta``), and is projected exactly onto the L1 ball
    intersected with [0,1] (``norms.l1_box``), without momentum; ``eta`` starts at
    ``eps`` and every 4% of the steps ``share`` becomes the best point's sparsity / 1.5,
    and a sample whose best point became over 5% sparser returns there with ``eta`` back
    at ``eps``, the others' ``eta`` shrinks by 1.5 (never below ``eps / 10``). The random
    start projects ``x`` plus Gaussian noise onto the ball and box. (AutoAttack's L1
    standard version also runs the steps at 3, 2 then 1 times eps; this does not.)

    Args:
        eps: the radius in ``norm`` ([0,1] pixel units).
        norm: ``"Linf"`` (default), ``"L2"`` or ``"L1"``.
        steps: iterations per run.
        restarts: runs from fresh random starts, on the samples still unfooled.
        loss: ``"ce"``, ``"dlr"``, ``"margin"`` or a callable ``(logits, y) -> (N,)``.
        targeted: APGD-T, over ``n_target_classes`` targets from ``first_target`` on.
        n_target_classes: targets per sample (at most classes - 1).
        first_target: how many of the top targets to skip.
        rho: the share of improving steps below which a checkpoint halves the step.
        momentum: the weight of the new step against the last move.
        seed: seeds the random starts.
        random_start: start uniformly in the ball (else at ``x``).
        eot: forwards averaged per step, for a randomised model (every attack has it).

    Returns:
        ``apgd(model, x, y, execution=None)`` on a batch in [0,1] returns an ``AttackResult``.

    Example:
        >>> apgd = aerobust.attacks.APGD(eps=8 / 255, steps=10, loss="dlr")
        >>> result = apgd(model, x, y)
        >>> result.x_adv.shape == x.shape
        True
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
    norm: str = "Linf"

    def __post_init__(self) -> None:
        super().__post_init__()
        resolve(self.name, self.loss)
        object.__setattr__(self, "norm", norms.check_norm(self.name, self.norm))
        norms.check_eps(self.name, self.norm, self.eps)
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
        """Each sample's noise for every restart, ``(N, restarts, ...)``, from the seeded
        CPU generator for the whole batch (as PGD's): uniform in Linf, Gaussian else."""
        return random_starts(x, self.seed, self.restarts, self.norm,
                             self.random_start and self.eps != 0)

    def _attack(
        self, model: CountedModel, x: Tensor, y: Tensor, draws: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        if self.eps == 0:
            with torch.no_grad():
                return x.clone(), model(x).argmax(dim=1) != y
        lo, hi = linf_box(x, self.eps) if self.norm == "Linf" else (None, None)
        if self.targeted:
            with torch.no_grad():
                clean = model(x)
            targets: list[Tensor | None] = list(
                target_classes(clean, y, self.first_target, self.n_target_classes,
                               model.rejects))
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
                    start = (torch.clamp(start + self.eps * (2 * noise - 1), lo[todo], hi[todo])
                             if self.norm == "Linf" else
                             norms.start(self.norm, self.eps, start, noise))
                adv, hit, best = self._run(model, start, y[todo], x[todo], _rows(lo, todo),
                                           _rows(hi, todo), _rows(target, todo))
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
        center: Tensor,
        lo: Tensor | None,
        hi: Tensor | None,
        target: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One run of ``steps`` steps from ``current``; returns each sample's kept iterate
        (its first fooling one, else its best), whether it fools, and its best loss.

        A fooled sample leaves the batch: every per-sample state tensor is cut to the
        rows still attacked, ``rows`` mapping them back to the run's samples. With EOT
        (see the class) no sample leaves and none is sent back.
        """
        n = len(y)
        noisy = model.draws > 1  # EOT: every loss and verdict is an estimate
        adv = torch.empty_like(current)
        fooled = torch.zeros(n, dtype=torch.bool, device=y.device)
        best_loss = torch.full((n,), torch.inf, dtype=current.dtype, device=current.device)
        rows = torch.arange(n, device=y.device)
        l1 = self.norm == "L1"
        at = set(l1_checks(self.steps) if l1 else checkpoints(self.steps))
        named = None if target is None else TARGETED[str(self.loss).lower()]
        plain = resolve(self.name, self.loss)
        first_eta = self.eps if l1 else 2 * self.eps
        eta = torch.full((n,), first_eta, dtype=current.dtype, device=current.device)
        # L1-APGD: the share of coordinates a step moves, and the best point's sparsity
        # at the last checkpoint.
        pixels = center[0].numel()
        share = torch.full_like(eta, 0.2) if l1 else None
        sparsity = torch.full_like(eta, pixels) if l1 else None
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
                # with EOT: this iterate if it fools, else its latest one that did
                kept = torch.where(batch_view(fooled[rows], current), adv[rows], best)
                fooled[rows] |= newly
                adv[rows] = torch.where(batch_view(newly, current), current, kept)
                best_loss[rows] = best_now
                return adv, fooled, best_loss
            any_fooled = bool(newly.any())
            if any_fooled:  # these rows keep this iterate
                done = rows[newly]
                adv[done] = current.detach()[newly]
                fooled[done] = True
                if not noisy and bool(newly.all()):
                    return adv, fooled, best_loss
            grad = (out.grad.sign_() if self.norm == "Linf" else
                    norms.l2_direction(out.grad) if self.norm == "L2" else out.grad)
            best_grad = grad if step == 0 else torch.where(batch_view(improved, grad), grad,
                                                           best_grad)
            if any_fooled and not noisy:  # ... and leave the batch
                still = ~newly
                (current, y, center, lo, hi, rows, target, prev, best, best_grad, grad, loss,
                 best_now, ups, halved, best_then, eta, share, sparsity) = (
                    None if t is None else t[still] for t in (
                        current.detach(), y, center, lo, hi, rows, target, prev, best,
                        best_grad, grad, loss, best_now, ups, halved, best_then, eta, share,
                        sparsity))
            with torch.no_grad():
                current = current.detach()
                prev_loss = loss
                # The weight of the new step against the last move: none at first.
                weight: float | Tensor = 1.0 if step == 0 else self.momentum
                if l1:
                    if step in at:
                        now = (best - center).flatten(1).ne(0).sum(dim=1).to(eta.dtype)
                        back = now / sparsity < 0.95
                        share = now / pixels / 1.5
                        eta = torch.where(back, self.eps, eta / 1.5).clamp_(self.eps / 10,
                                                                            self.eps)
                        sparsity = now
                        current = torch.where(batch_view(back, current), best, current)
                        grad = torch.where(batch_view(back, grad), best_grad, grad)
                        prev_loss = torch.where(back, best_now, loss)
                    step_to = current + batch_view(eta, grad) * norms.sparse_direction(grad,
                                                                                       share)
                    prev, current = current, norms.l1_box(center, step_to, self.eps)
                    continue
                if step in at:
                    oscillating = ups < self.rho * (step - last_check)
                    stalled = ~halved & (best_now <= best_then)
                    halve = oscillating | stalled
                    eta = torch.where(halve, eta / 2, eta)
                    back = batch_view(torch.zeros_like(halve) if noisy else halve, current)
                    current = torch.where(back, best, current)
                    grad = torch.where(back, best_grad, grad)
                    prev_loss = torch.where(halve, best_now, loss)
                    # A sample sent back takes a first step again, without momentum.
                    weight = torch.where(back, 1.0, self.momentum).to(current.dtype)
                    halved, best_then, last_check = halve, best_now, step
                    ups = torch.zeros_like(ups)
                z = norms.project(self.norm, self.eps, center,
                                  current + batch_view(eta, grad) * grad, lo, hi)
                # x + w (z - x) + (1 - w)(x - prev) = lerp(2x - prev, z, w)
                moved = z if step == 0 else torch.lerp(current - prev + current, z, weight)
                prev, current = current, norms.project(self.norm, self.eps, center, moved,
                                                       lo, hi)
        raise AssertionError("unreachable")
