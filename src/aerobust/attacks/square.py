"""Square Attack (Andriushchenko et al. 2020) in the Linf ball (random search on its
vertices) or the L2 ball (moving perturbation mass between squares), from scores alone."""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from aerobust.attacks import norms
from aerobust.attacks.base import Attack, CountedModel, batch_view, check_number, linf_box
from aerobust.attacks.losses import LossFn, resolve
from aerobust.errors import UserError
from aerobust.rejection import fooled as wrong_class

# The iterations, out of a budget of 10,000, after which the paper's schedule halves p
# (the share of a channel's pixels one update covers); other budgets scale them.
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_share(p_init: float, it: int, queries: int) -> float:
    """p at iteration ``it`` (from 0) of a run of ``queries`` iterations."""
    return p_init / 2 ** bisect.bisect_left(HALVINGS, int(it / queries * 10_000))


def square_side(p: float, height: int, width: int) -> int:
    """The side of a square covering about a share ``p`` of an image's pixels."""
    return min(max(round(math.sqrt(p * height * width)), 1), height, width)


@dataclass(frozen=True)
class Square(Attack):
    """Random search that reads only the model's scores, never a gradient: a defense
    that masks or breaks gradients (a non-differentiable preprocessing, saturated
    softmax, stochastic layers) cannot stop it, so it checks that a gradient attack's
    failure means robustness rather than a useless gradient.

    Starts from vertical stripes of +-eps (clipped to [0,1]); each iteration proposes,
    per sample, a square of side ``round(sqrt(p * H * W))`` at a random position set to
    ``x +- eps`` (one random sign per channel, clipped to [0,1]), so the perturbation
    stays at the vertices of the ball. A proposal that would change nothing gets the
    opposite signs (the authors redraw it), so no query is wasted. The proposal
    replaces the current iterate where it strictly raises ``loss`` (any name of
    ``attacks.losses.LOSSES`` or a callable; ``margin``, the paper's, by default).
    p starts at ``p_init`` and is halved on the paper's schedule for 10,000 queries,
    scaled to ``queries``. Inputs are images (N, C, H, W) (more leading dimensions are
    channels; (N, H, W) has one channel; (N, D) is a 1 x D image).

    A sample clean-misclassified keeps ``x``; otherwise it keeps the first iterate
    that fools the model and leaves the batch, so queries are spent only on samples
    still robust; a sample never fooled keeps its highest-loss iterate. Each of
    ``restarts`` runs starts afresh (new stripes) on the samples still unfooled.

    Cost: one forward of the clean batch, then per restart one forward for the stripes
    and one per iteration, on the samples still active: ``forwards <= 1 + restarts *
    (queries + 1)`` (plus the runner's final check in NHWC or with EOT), and
    ``backwards == 0``. Everything runs under ``torch.no_grad()``.

    Randomness comes from a CPU generator per block, seeded from one number per
    sample drawn with ``seed`` (the block's first sample's): the same configuration
    and block size give identical results, but the draws, and so the results,
    depend on how the batch is split into blocks.

    ``norm="L2"`` is the paper's L2 variant (``eps`` in [0,1] pixel units): the start
    tiles the image with squares of side ``H // 5`` holding ``l2_pattern`` with a random
    sign per channel, scaled to L2 norm ``eps``; each proposal, per sample, picks two
    squares of an odd side ``>= 3`` (from the same schedule of p), empties the second
    and puts into the first its old content plus a fresh signed pattern (transposed at
    random), with the mass the two held plus what the budget still allows, then scales
    the whole perturbation back to norm ``eps`` and clamps to [0,1] (which only shrinks
    it). Cost and the rest as above.

    Args:
        eps: the radius in ``norm`` ([0,1] pixel units).
        norm: ``"Linf"`` (default) or ``"L2"``.
        queries: iterations (one forward each) per restart.
        p_init: the first share of the image a square covers.
        restarts: runs from fresh stripes, on the samples still unfooled.
        loss: ``"margin"`` (default), ``"ce"``, ``"dlr"`` or a callable.
        seed: seeds the random search.
        eot: forwards averaged per step, for a randomised model (every attack has it).

    Returns:
        ``square(model, x, y, execution=None)`` on a batch in [0,1] returns an ``AttackResult``.

    Example:
        >>> square = aerobust.attacks.Square(eps=8 / 255, queries=50)
        >>> square(model, x, y).backwards
        0
    """

    name = "square"
    eps: float
    queries: int = 5000
    p_init: float = 0.8
    restarts: int = 1
    loss: str | LossFn = "margin"
    seed: int = 0
    norm: str = "Linf"

    def __post_init__(self) -> None:
        super().__post_init__()
        resolve(self.name, self.loss)
        object.__setattr__(self, "norm", norms.check_norm(self.name, self.norm))
        if self.norm == "L1":
            raise UserError(f"{self.name}: norm must be Linf or L2 (no L1 variant), got 'L1'")
        norms.check_eps(self.name, self.norm, self.eps)
        check_number(self.name, "queries", self.queries, 1, integer=True)
        check_number(self.name, "p_init", self.p_init, 0.0, 1.0, low_open=True)
        check_number(self.name, "restarts", self.restarts, 1, integer=True)
        check_number(self.name, "seed", self.seed, 0, integer=True)

    def _draws(self, x: Tensor) -> Tensor | None:
        """One seed per sample from the generator seeded with ``seed``; a block's
        generator is seeded with its first sample's, so blocks draw distinct streams."""
        generator = torch.Generator().manual_seed(self.seed)
        return torch.randint(0, 2**62, (len(x),), generator=generator)

    @torch.no_grad()
    def _attack(
        self, model: CountedModel, x: Tensor, y: Tensor, draws: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        if len(y) == 0:
            return x.clone(), torch.zeros_like(y, dtype=torch.bool)
        loss = resolve(self.name, self.loss)
        logits = model(x)
        fooled = wrong_class(logits, y, model.rejects)
        if self.eps == 0 or bool(fooled.all()):
            return x.clone(), fooled
        images = _as_images(x)
        x_adv = images.clone()
        best = loss(logits, y)
        generator = torch.Generator().manual_seed(int(draws[0]) if draws is not None else 0)
        for _ in range(self.restarts):
            todo = (~fooled).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            adv, value, hit = self._restart(model, images[todo], y[todo], x.shape, generator)
            better = hit | (value > best[todo])
            rows = todo[better]
            x_adv[rows] = adv[better]
            best[rows] = value[better]
            fooled[todo] = hit
        return x_adv.reshape(x.shape), fooled

    def _restart(
        self,
        model: CountedModel,
        x: Tensor,
        y: Tensor,
        shape: torch.Size,
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One run on the images ``x`` (n, C, H, W): returns per sample the kept iterate,
        its loss and whether it fools the model (``shape``: the model's input shape)."""
        n, channels, height, width = x.shape
        loss = resolve(self.name, self.loss)
        l2 = self.norm == "L2"
        lo, hi = (x, x) if l2 else linf_box(x, self.eps)  # Linf: the two values a pixel can take

        def forward(current: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            logits = model(current.reshape(-1, *shape[1:]))
            return loss(logits, y), wrong_class(logits, y, model.rejects)

        def signs(*size: int) -> Tensor:
            return torch.randint(0, 2, size, generator=generator).to(x.device).bool()

        if l2:
            current = self._l2_start(x, generator)
        else:
            current = torch.where(signs(n, channels, 1, width), hi, lo)  # vertical stripes
        value, hit = forward(current, y)
        adv, adv_value, fooled = current.clone(), value.clone(), hit.clone()
        rows = torch.arange(n, device=x.device)  # each active sample's row in x
        for it in range(self.queries + 1):
            if bool(hit.any()):  # these keep the iterate that fooled (in adv) and leave
                fooled[rows[hit]] = True
                keep = ~hit
                current, value, lo, hi, y, rows = (current[keep], value[keep], lo[keep],
                                                   hi[keep], y[keep], rows[keep])
            k = len(rows)
            if k == 0 or it == self.queries:
                break
            p = square_share(self.p_init, it, self.queries)
            if l2:
                candidate = self._l2_proposal(lo, current, l2_side(p, height, width),
                                              generator)
            else:
                side = square_side(p, height, width)
                top, left = (torch.randint(0, size - side + 1, (k, 1, 1), generator=generator)
                             .to(x.device) for size in (height, width))
                window = square_mask(height, width, top, left, side)
                up = signs(k, channels, 1, 1)
                candidate = torch.where(window, torch.where(up, hi, lo), current)
                stale = (candidate == current).flatten(1).all(dim=1)
                if bool(stale.any()):
                    up = up ^ batch_view(stale, up)
                    candidate = torch.where(window, torch.where(up, hi, lo), current)
            new, hit = forward(candidate, y)
            better = hit | (new > value)
            current = torch.where(batch_view(better, current), candidate, current)
            value = torch.where(better, new, value)
            adv[rows[better]], adv_value[rows[better]] = current[better], value[better]
        return adv, adv_value, fooled

    def _to_sphere(self, x: Tensor, delta: Tensor) -> Tensor:
        """``x`` plus ``delta`` scaled to L2 norm ``eps``, clamped to [0,1]."""
        scale = self.eps / norms.size(delta, "L2").clamp_min(1e-12)
        return (x + delta * batch_view(scale, delta)).clamp_(0.0, 1.0)

    def _l2_start(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Squares of side ``H // 5`` tiling the image's centre, each a signed pattern."""
        n, channels, height, width = x.shape
        side = max(height // 5, 1)
        pattern = l2_pattern(side).to(x)
        delta = torch.zeros_like(x)
        first_h, first_w = ((size - side * (size // side)) // 2 for size in (height, width))
        for top in range(first_h, height - side + 1, side):
            for left in range(first_w, width - side + 1, side):
                sign = torch.randint(0, 2, (n, channels, 1, 1), generator=generator).to(x)
                delta[:, :, top:top + side, left:left + side] = pattern * (2 * sign - 1)
        return self._to_sphere(x, delta)

    def _l2_proposal(self, x: Tensor, current: Tensor, side: int,
                     generator: torch.Generator) -> Tensor:
        """Move the perturbation's mass from one random square into another, with a fresh
        signed pattern (per sample: its own squares, sign per channel, orientation)."""
        k, channels, height, width = x.shape
        device = x.device

        def corner(size: int) -> Tensor:
            return torch.randint(0, size - side + 1, (k, 1, 1), generator=generator).to(device)

        span = torch.arange(side, device=device)
        tops, lefts = (corner(height), corner(height)), (corner(width), corner(width))
        masks = [square_mask(height, width, top, left, side)
                 for top, left in zip(tops, lefts, strict=True)]
        delta = current - x
        rows_h = tops[0] + span.view(1, side, 1)
        cols_w = lefts[0] + span.view(1, 1, side)
        batch = torch.arange(k, device=device).view(k, 1, 1)
        # The first square's content, (k, C, side, side).
        old = delta.permute(0, 2, 3, 1)[batch, rows_h, cols_w].permute(0, 3, 1, 2)
        old_norm = old.flatten(2).norm(dim=2).view(k, channels, 1, 1)
        both = (delta * (masks[0] | masks[1])).flatten(2).norm(dim=2).view(k, channels, 1, 1)
        budget = (self.eps ** 2 - norms.size(delta, "L2") ** 2).clamp_min(0.0)
        pattern = l2_pattern(side).to(x)
        flip = torch.randint(0, 2, (k, 1, 1, 1), generator=generator).to(device).bool()
        sign = torch.randint(0, 2, (k, channels, 1, 1), generator=generator).to(x) * 2 - 1
        new = torch.where(flip, pattern.T, pattern) * sign + old / (old_norm + 1e-12)
        mass = (batch_view(budget, new) / channels + both ** 2).sqrt()
        new = new / (new.flatten(2).norm(dim=2).view(k, channels, 1, 1) + 1e-12) * mass
        moved = delta.masked_fill(masks[1], 0.0)
        moved.permute(0, 2, 3, 1)[batch, rows_h, cols_w] = new.permute(0, 2, 3, 1)
        return self._to_sphere(x, moved)


def square_mask(height: int, width: int, top: Tensor, left: Tensor, side: int) -> Tensor:
    """(k, 1, H, W): True on each sample's square of ``side`` at ``top``/``left`` (k, 1, 1)."""
    pixel_h = torch.arange(height, device=top.device).view(1, height, 1)
    pixel_w = torch.arange(width, device=top.device).view(1, 1, width)
    return ((pixel_h >= top) & (pixel_h < top + side)
            & (pixel_w >= left) & (pixel_w < left + side)).unsqueeze(1)


def l2_side(p: float, height: int, width: int) -> int:
    """The L2 variant's square side: odd and at least 3 (its pattern needs a centre)."""
    side = max(round(math.sqrt(p * height * width)), 3)
    return min(side + (side % 2 == 0), height, width)


def pyramid(height: int, width: int) -> Tensor:
    """A rectangle whose pixel at Chebyshev distance r from the centre holds
    ``sum_{j >= r} 1 / (j + 1) ** 2``: nested squares, heavy in the middle."""
    reach = max(height // 2, width // 2) + 1
    tail = (1 / torch.arange(1, reach + 1, dtype=torch.float64) ** 2).flip(0).cumsum(0).flip(0)
    rows = (torch.arange(height) - height // 2).abs().view(-1, 1)
    cols = (torch.arange(width) - width // 2).abs().view(1, -1)
    return tail[torch.maximum(rows, cols)]


@functools.cache
def l2_pattern(side: int) -> Tensor:
    """The L2 variant's update (Andriushchenko et al. 2020): a square whose halves are a
    positive and a negative pyramid, unit L2 norm (cached: one per side; never written)."""
    top = pyramid(side // 2, side)
    bottom = pyramid(side - side // 2, side)
    pattern = (torch.cat([top / top.norm(), -bottom / bottom.norm()]) if side > 1
               else bottom)
    return (pattern / pattern.norm()).float()


def _as_images(x: Tensor) -> Tensor:
    """``x`` as (N, C, H, W): extra leading dimensions are channels."""
    if x.dim() == 2:
        return x.reshape(len(x), 1, 1, x.shape[1])
    return x.reshape(len(x), -1, *x.shape[-2:])
