"""Projected Gradient Descent (Madry et al. 2018) in the Linf, L2 or L1 ball, with
restarts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from aerobust.attacks import norms
from aerobust.attacks.base import Attack, CountedModel, check_bool, check_number, linf_box
from aerobust.attacks.losses import LossFn, resolve
from aerobust.errors import UserError

KEEP = ("first", "last")
# PGD-L1 moves the top 1% of coordinates by gradient magnitude each step (SLIDE's 99th
# percentile, Tramer & Boneh 2019).
SLIDE_SHARE = 0.01


def uniform_starts(x: Tensor, seed: int, restarts: int) -> Tensor:
    """Uniform [0,1) noise for every sample and restart, ``(N, restarts, ...)``: restart
    r's noise for the whole batch comes from a CPU generator seeded with ``seed`` in
    turn, so a sample's start depends on neither its block nor the device."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.rand(x.shape, generator=generator, dtype=x.dtype)
                        for _ in range(restarts)], dim=1)


def random_starts(x: Tensor, seed: int, restarts: int, norm: str,
                  wanted: bool = True) -> Tensor | None:
    """The noise of every restart's random start: uniform for Linf, Gaussian for L2 and
    L1 (``norms.normal_starts``); None when no random start is wanted."""
    if not wanted:
        return None
    if norm == "Linf":
        return uniform_starts(x, seed, restarts)
    return norms.normal_starts(x, seed, restarts)


@dataclass(frozen=True)
class PGD(Attack):
    """Signed-gradient ascent on a loss (CE by default), projected onto the eps-ball and
    [0,1]. ``loss`` names one of ``attacks.losses.LOSSES`` (``ce``, ``dlr``, ``margin``)
    or is any callable ``(logits, y) -> per-sample loss`` to maximise.

    ``keep="first"`` (default): per sample, the first iterate that fools the model is
    kept (a minimal-effort adversarial, barely over the boundary); a sample never fooled
    keeps the final iterate of the last restart it ran. ``keep="last"``: every sample
    keeps the final iterate and counts fooled by it alone; it sits deeper in the wrong
    class, the usual choice for transfer to another model. Restarts re-attack only the
    samples still unfooled, so a sample counts robust only if it survives every restart.

    Cost per restart, for the samples it runs on: ``steps`` forward+backward passes plus
    one forward for the final iterate, i.e. at most ``forwards = restarts * (steps + 1)``
    and ``backwards = restarts * steps``; fewer when every sample is fooled early. With
    ``keep="first"`` a fooled sample also leaves the batch, so the passes shrink as the
    attack succeeds (the results are those of the full batch: eval mode makes samples
    independent).
    Whether iterate k fools the model is read from the logits of the forward pass that
    also yields its gradient, so there is no extra forward per step. ``eps == 0`` is a
    single forward (the ball is a point). With ``keep="last"`` every step runs.

    ``step_size`` defaults to ``2.5 * eps / steps`` in every norm: each step has that
    length in the attack's norm. Random starts come from a CPU generator seeded with
    ``seed`` at each call, drawn for the whole batch before it is split into blocks, so
    results are reproducible on any device and block size.

    ``norm`` is the threat model (``attacks.norms``; ``eps`` in [0,1] pixel units for
    every norm). Linf steps along the gradient's sign and clamps to the ball and [0,1].
    ``"L2"`` steps along the gradient normalised to unit L2 length, pulls the iterate
    into the L2 ball and clamps it to [0,1], and starts on the sphere of radius ``eps``.
    ``"L1"`` takes sparse steps (the gradient's signs on its top 1% of coordinates, L1
    length ``step_size``: SLIDE, Tramer & Boneh 2019), counting only coordinates the box
    lets move that way (else the largest gradients of a sparse image push its black
    pixels below 0 and the step is lost), each projected exactly onto the L1 ball
    intersected with [0,1], from a random start in it (``norms.start``).

    Args:
        eps: the radius in ``norm`` ([0,1] pixel units).
        norm: ``"Linf"`` (default), ``"L2"`` or ``"L1"``.
        steps: gradient steps per restart.
        step_size: the size of a step; None: ``2.5 * eps / steps``.
        restarts: runs from fresh random starts, on the samples still unfooled.
        random_start: start uniformly in the ball (else at ``x``).
        seed: seeds the random starts.
        keep: ``"first"`` fooling iterate (white-box) or ``"last"`` (transfer).
        loss: ``"ce"``, ``"dlr"``, ``"margin"`` or a callable ``(logits, y) -> (N,)``.
        eot: forwards averaged per step, for a randomised model (every attack has it).

    Returns:
        ``pgd(model, x, y, execution=None)`` on a batch in [0,1] returns an ``AttackResult``.

    Example:
        >>> pgd = aerobust.attacks.PGD(eps=8 / 255, steps=10)
        >>> result = pgd(model, x, y)
        >>> result.backwards <= 10
        True
    """

    name = "pgd"
    eps: float
    steps: int = 40
    step_size: float | None = None
    restarts: int = 1
    random_start: bool = True
    seed: int = 0
    keep: str = "first"
    loss: str | LossFn = "ce"
    norm: str = "Linf"

    def __post_init__(self) -> None:
        super().__post_init__()
        resolve(self.name, self.loss)
        object.__setattr__(self, "norm", norms.check_norm(self.name, self.norm))
        norms.check_eps(self.name, self.norm, self.eps)
        check_number(self.name, "steps", self.steps, 1, integer=True)
        if self.step_size is None:
            object.__setattr__(self, "step_size", 2.5 * self.eps / self.steps)
        else:
            check_number(self.name, "step_size", self.step_size, 0.0,
                         1.0 if self.norm == "Linf" else math.inf)
        check_number(self.name, "restarts", self.restarts, 1, integer=True)
        check_bool(self.name, "random_start", self.random_start)
        check_number(self.name, "seed", self.seed, 0, integer=True)
        if self.keep not in KEEP:
            raise UserError(f"{self.name}: keep must be one of {', '.join(KEEP)}, "
                            f"got {self.keep!r}")

    def _draws(self, x: Tensor) -> Tensor | None:
        """Each sample's random start for every restart, ``(N, restarts, ...)``: restart
        r's noise for the whole batch comes from the seeded CPU generator in turn, so a
        sample gets the same start whatever block (or device) it is attacked on."""
        return random_starts(x, self.seed, self.restarts, self.norm,
                             self.random_start and self.eps != 0)

    def _attack(
        self, model: CountedModel, x: Tensor, y: Tensor, draws: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        if self.eps == 0:
            with torch.no_grad():
                return x.clone(), model(x).argmax(dim=1) != y
        # Linf: the box every iterate is clamped to; L2, L1: both carry the ball's centre.
        lo, hi = linf_box(x, self.eps) if self.norm == "Linf" else (x, x)
        x_adv = x.clone()
        fooled = torch.zeros_like(y, dtype=torch.bool)
        for restart in range(self.restarts):
            todo = (~fooled).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            start = x[todo]
            if draws is not None:
                noise = draws[todo.cpu(), restart].to(x.device)
                start = (torch.clamp(start + self.eps * (2 * noise - 1), lo[todo], hi[todo])
                         if self.norm == "Linf" else norms.start(self.norm, self.eps, start,
                                                                 noise))
            adv, hit = self._restart(model, start, y[todo], lo[todo], hi[todo])
            x_adv[todo] = adv
            fooled[todo] = hit
        return x_adv, fooled

    def _restart(
        self,
        model: CountedModel,
        current: Tensor,
        y: Tensor,
        lo: Tensor,
        hi: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """One run of ``steps`` steps from ``current`` (a fresh tensor, updated in place);
        returns the kept iterate and whether it fools.

        With ``keep="first"`` a sample leaves the batch once an iterate fools the model:
        its adversarial is decided, and in eval mode the other samples' gradients do not
        depend on it, so later steps cost only what is still being attacked.
        """
        adv = torch.empty_like(current)
        fooled = torch.zeros_like(y, dtype=torch.bool)
        rows = torch.arange(len(y), device=y.device)  # each active row's index in x
        first = self.keep == "first"
        loss = resolve(self.name, self.loss)
        for step in range(self.steps + 1):
            if step == self.steps:
                fooled[rows] = model.fooled(current, y)
                break
            out = model.step(current, y, loss)
            newly = out.fooled
            drop = first and bool(newly.any())
            if drop:  # these rows keep this iterate
                done = rows[newly]
                adv[done] = current.detach()[newly]
                fooled[done] = True
                if bool(newly.all()):
                    rows = rows[:0]
                    break
            with torch.no_grad():
                if self.norm == "Linf":
                    current.add_(out.grad.sign_(), alpha=self.step_size).clamp_(lo, hi)
                else:
                    current = self._step(current.detach(), out.grad, lo)
            if drop:  # ... and leave the batch
                still = ~newly
                current, y, lo, hi, rows = (current.detach()[still], y[still], lo[still],
                                            hi[still], rows[still])
        if len(rows):
            adv[rows] = current.detach()
        return adv, fooled

    def _step(self, current: Tensor, grad: Tensor, center: Tensor) -> Tensor:
        """One L2 or L1 step of ``step_size`` from ``current``, back into the ball around
        ``center`` and [0,1]."""
        if self.norm == "L2":
            return norms.l2_ball(center, current + self.step_size * norms.l2_direction(grad),
                                 self.eps)
        # Only coordinates the box lets move that way compete for the step: the largest
        # gradients of a sparse image often push its black pixels below 0.
        stuck = ((current <= 0) & (grad < 0)) | ((current >= 1) & (grad > 0))
        share = torch.full((len(grad),), SLIDE_SHARE, dtype=grad.dtype, device=grad.device)
        return norms.l1_box(center, current + self.step_size * norms.sparse_direction(
            grad.masked_fill(stuck, 0.0), share), self.eps)
