"""FAB, the Fast Adaptive Boundary attack (Croce & Hein 2020): minimum-norm adversarials
in the Linf, L2 or L1 ball, targeted (FAB-T, as in AutoAttack) or not."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from aerobust.attacks import norms
from aerobust.attacks.apgd import target_classes
from aerobust.attacks.base import Attack, CountedModel, batch_view, check_bool, check_number
from aerobust.attacks.losses import targeted_margin
from aerobust.attacks.pgd import uniform_starts

# The dual of each norm: a linear function's distance to its zero set in ``norm`` is
# its value over its gradient's dual norm.
DUAL = {"Linf": "L1", "L2": "L2", "L1": "Linf"}


def _capped_level(weight: Tensor, cap: Tensor, need: Tensor) -> Tensor:
    """The smallest ``lam >= 0`` with ``sum_i weight_i * min(lam, cap_i) >= need`` per row
    (the largest cap where no ``lam`` reaches it). The sum is piecewise linear and
    increasing; sorting the caps gives its value at each of them by cumulative sums, and
    ``lam`` by solving the segment that crosses ``need``."""
    cap, order = cap.sort(dim=1)
    weight = weight.gather(1, order)
    below = (weight * cap).cumsum(dim=1) - weight * cap  # sum over caps before each
    rest = weight.flip(1).cumsum(dim=1).flip(1)  # weight still growing at each cap
    reached = below + cap * rest
    k = (reached < need.unsqueeze(1)).sum(dim=1, keepdim=True)
    last = cap[:, -1:]
    k_in = k.clamp_max(cap.shape[1] - 1)
    lam = (need.unsqueeze(1) - below.gather(1, k_in)) / rest.gather(1, k_in).clamp_min(1e-30)
    lam = torch.minimum(lam, cap.gather(1, k_in))
    return torch.where(k >= cap.shape[1], last, lam).squeeze(1)


def plane_step(norm: str, x: Tensor, w: Tensor, need: Tensor) -> Tensor:
    """The smallest step ``d`` in ``norm`` with ``<w, d> = need`` and ``x + d`` in [0,1],
    per row of the flat ``x``, ``w`` (N, D); where [0,1] cannot reach the hyperplane,
    the box's corner that gets closest. Exact for each norm: Linf and L2 move every
    coordinate towards the plane up to a common level (``_capped_level``), L1 fills the
    coordinates with the largest ``|w_i|`` first (a fractional knapsack)."""
    v = w * need.sign().unsqueeze(1)  # now <v, d> = |need| >= 0 is wanted
    gain = v.abs()
    cap = torch.where(v > 0, 1.0 - x, x).clamp_min(0.0) * (gain > 0)  # room towards the plane
    target = need.abs()
    if norm == "L1":
        gain, order = gain.sort(dim=1, descending=True)
        room = cap.gather(1, order)
        before = (gain * room).cumsum(dim=1) - gain * room
        amount = ((target.unsqueeze(1) - before) / gain.clamp_min(1e-30)).clamp_min(0.0)
        amount = torch.minimum(amount, room)
        moved = torch.zeros_like(x).scatter(1, order, amount)
    elif norm == "Linf":
        moved = torch.minimum(_capped_level(gain, cap, target).unsqueeze(1), cap)
    else:
        reach = cap / gain.clamp_min(1e-30)  # the level at which coordinate i is capped
        moved = gain * torch.minimum(_capped_level(gain * gain, reach, target).unsqueeze(1),
                                     reach)
    return v.sign() * moved


@dataclass(frozen=True)
class FAB(Attack):
    """The smallest perturbation in ``norm`` it can find that fools the model, judged
    against the fixed radius ``eps``: a sample counts fooled (and keeps an adversarial)
    only within ``eps``, otherwise it keeps ``x``. Where gradient steps of fixed length
    overshoot or stall, FAB steps onto the model's linearised decision boundary, so it
    finds points close to it without a step size; it is the third attack of
    AutoAttack's standard version (FAB-T).

    Each step linearises the logit difference ``h = z_t - z_y`` at the iterate (one
    forward and backward) and projects onto its zero plane, inside [0,1], both the
    iterate (``d1``) and the original point (``d2``) with ``plane_step``; the next
    iterate is ``(1 - a)(x_k + eta d1) + a (x + eta d2)``, clamped to [0,1], with ``a =
    min(|d1| / (|d1| + |d2|), alpha_max)``: the closer the boundary is to ``x``, the more
    it pulls there. A forward judges the new iterate (argmax != y); when it fools the
    model it is kept if smaller than the best so far, and the iterate moves back towards
    ``x`` (``x + beta (x_k - x)``) to look for a smaller one. A sample leaves the batch
    at its first adversarial within ``eps``.

    ``targeted=True`` (FAB-T): ``t`` is in turn each of the ``n_target_classes`` classes
    with the highest clean logits other than the label, each with ``restarts`` runs on
    the samples not yet fooled. ``targeted=False``: every step linearises every class
    and aims at the nearest boundary (one forward and backward per class and step).
    The first run per target starts at ``x``; each further one at a random point of
    size ``eps / 2`` in the norm (uniform in Linf, Gaussian in L2 and L1 directions,
    clamped to [0,1]) from a CPU generator seeded with ``seed``, drawn for the whole
    batch before it is split into blocks.

    Cost per run, for the samples it runs on: ``steps`` forward+backward passes (times
    the classes untargeted) and ``steps`` forwards, plus one clean forward per call.
    """

    name = "fab"
    eps: float
    norm: str = "Linf"
    targeted: bool = True
    n_target_classes: int = 9
    steps: int = 100
    restarts: int = 1
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "norm", norms.check_norm(self.name, self.norm))
        norms.check_eps(self.name, self.norm, self.eps)
        check_bool(self.name, "targeted", self.targeted)
        check_number(self.name, "n_target_classes", self.n_target_classes, 1, integer=True)
        check_number(self.name, "steps", self.steps, 1, integer=True)
        check_number(self.name, "restarts", self.restarts, 1, integer=True)
        check_number(self.name, "alpha_max", self.alpha_max, 0.0, 1.0)
        check_number(self.name, "eta", self.eta, 1.0, 2.0)
        check_number(self.name, "beta", self.beta, 0.0, 1.0)
        check_number(self.name, "seed", self.seed, 0, integer=True)

    def _draws(self, x: Tensor) -> Tensor | None:
        """Noise for the random starts of runs after the first, ``(N, restarts - 1, ...)``."""
        if self.restarts == 1 or self.eps == 0:
            return None
        if self.norm == "Linf":
            return 2 * uniform_starts(x, self.seed, self.restarts - 1) - 1
        return norms.normal_starts(x, self.seed, self.restarts - 1)

    def _attack(
        self, model: CountedModel, x: Tensor, y: Tensor, draws: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            clean = model(x)
        fooled = clean.argmax(dim=1) != y
        x_adv = x.clone()
        if self.eps == 0:
            return x_adv, fooled
        if self.targeted:
            targets: list[Tensor | None] = list(
                target_classes(clean, y, 0, self.n_target_classes, model.rejects))
        else:
            targets = [None]
        for target in targets:
            for restart in range(self.restarts):
                todo = (~fooled).nonzero().squeeze(1)
                if todo.numel() == 0:
                    return x_adv, fooled
                start = x[todo]
                if restart > 0 and draws is not None:
                    noise = draws[todo.cpu(), restart - 1].to(x.device)
                    radius = self.eps / 2 / norms.size(noise, self.norm).clamp_min(1e-12)
                    start = (start + noise * batch_view(radius, noise)).clamp_(0.0, 1.0)
                adv, hit = self._run(model, x[todo], start, y[todo],
                                     None if target is None else target[todo], clean.shape[1])
                x_adv[todo[hit]] = adv[hit]
                fooled[todo[hit]] = True
        return x_adv, fooled

    def _boundary(self, model: CountedModel, current: Tensor, y: Tensor,
                  target: Tensor | None, classes: int) -> tuple[Tensor, Tensor]:
        """The logit difference ``h`` whose zero plane the step aims at, and its input
        gradient, at ``current``: towards ``target``, or untargeted towards the class
        whose linearised boundary is nearest in the norm."""
        if target is not None:
            out = model.step(current, y, functools.partial(targeted_margin, target=target))
            return out.loss, out.grad
        values, grads = [], []
        for c in range(classes):
            aim = torch.full_like(y, c)
            out = model.step(current, y, functools.partial(targeted_margin, target=aim))
            values.append(out.loss)
            grads.append(out.grad)
        h, g = torch.stack(values, dim=1), torch.stack(grads, dim=1)  # (n, C), (n, C, ...)
        dual = norms.size(g.flatten(0, 1), DUAL[self.norm]).view(h.shape)
        distance = (h.abs() / (dual + 1e-12)).scatter(1, y.unsqueeze(1), torch.inf)
        nearest = distance.argmin(dim=1)
        rows = torch.arange(len(y), device=y.device)
        return h[rows, nearest], g[rows, nearest]

    def _run(self, model: CountedModel, x: Tensor, current: Tensor, y: Tensor,
             target: Tensor | None, classes: int) -> tuple[Tensor, Tensor]:
        """One run from ``current``: each sample's first adversarial within ``eps`` (else
        ``x``) and whether it found one."""
        n = len(y)
        adv, hit = x.clone(), torch.zeros(n, dtype=torch.bool, device=y.device)
        best = torch.full((n,), torch.inf, dtype=x.dtype, device=x.device)
        rows = torch.arange(n, device=y.device)
        for _ in range(self.steps):
            h, g = self._boundary(model, current, y, target, classes)
            with torch.no_grad():
                w, here, origin = g.flatten(1), current.flatten(1), x.flatten(1)
                d1 = plane_step(self.norm, here, w, -h).view_as(x)
                d2 = plane_step(self.norm, origin, w, -h - (w * (origin - here)).sum(dim=1)
                                ).view_as(x)
                a1 = norms.size(d1, self.norm).clamp_min(1e-8)
                a2 = norms.size(d2, self.norm).clamp_min(1e-8)
                alpha = batch_view((a1 / (a1 + a2)).clamp(0.0, self.alpha_max), x)
                current = ((1 - alpha) * (current + self.eta * d1)
                           + alpha * (x + self.eta * d2)).clamp_(0.0, 1.0)
                fools = model.fooled(current, y)
                distance = norms.size(current - x, self.norm)
                better = fools & (distance < best)
                best = torch.where(better, distance, best)
                within = better & (distance <= self.eps)
                adv[rows[within]] = current[within]
                hit[rows[within]] = True
                current = torch.where(batch_view(fools, x), x + self.beta * (current - x),
                                      current)
                if bool(within.any()):
                    still = ~within
                    x, current, y, best, rows = (x[still], current[still], y[still],
                                                 best[still], rows[still])
                    target = None if target is None else target[still]
                    if len(rows) == 0:
                        break
        return adv, hit
