"""Square Attack in the Linf ball (Andriushchenko et al. 2020): random search on the
vertices of the ball, from scores alone."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from aerobust.attacks.base import Attack, CountedModel, batch_view, check_number, linf_box
from aerobust.attacks.losses import LossFn, resolve
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
    """

    name = "square"
    eps: float
    queries: int = 5000
    p_init: float = 0.8
    restarts: int = 1
    loss: str | LossFn = "margin"
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        resolve(self.name, self.loss)
        check_number(self.name, "eps", self.eps, 0.0, 1.0)
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
        lo, hi = linf_box(x, self.eps)  # the two values a pixel can take

        def forward(current: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            logits = model(current.reshape(-1, *shape[1:]))
            return loss(logits, y), wrong_class(logits, y, model.rejects)

        def signs(*size: int) -> Tensor:
            return torch.randint(0, 2, size, generator=generator).to(x.device).bool()

        current = torch.where(signs(n, channels, 1, width), hi, lo)  # vertical stripes
        value, hit = forward(current, y)
        adv, adv_value, fooled = current.clone(), value.clone(), hit.clone()
        rows = torch.arange(n, device=x.device)  # each active sample's row in x
        pixel_h = torch.arange(height, device=x.device).view(1, height, 1)
        pixel_w = torch.arange(width, device=x.device).view(1, 1, width)
        for it in range(self.queries + 1):
            if bool(hit.any()):  # these keep the iterate that fooled (in adv) and leave
                fooled[rows[hit]] = True
                keep = ~hit
                current, value, lo, hi, y, rows = (current[keep], value[keep], lo[keep],
                                                   hi[keep], y[keep], rows[keep])
            k = len(rows)
            if k == 0 or it == self.queries:
                break
            side = square_side(square_share(self.p_init, it, self.queries), height, width)
            top, left = (torch.randint(0, size - side + 1, (k, 1, 1), generator=generator)
                         .to(x.device) for size in (height, width))
            window = ((pixel_h >= top) & (pixel_h < top + side)
                      & (pixel_w >= left) & (pixel_w < left + side)).unsqueeze(1)
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


def _as_images(x: Tensor) -> Tensor:
    """``x`` as (N, C, H, W): extra leading dimensions are channels."""
    if x.dim() == 2:
        return x.reshape(len(x), 1, 1, x.shape[1])
    return x.reshape(len(x), -1, *x.shape[-2:])
