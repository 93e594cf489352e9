"""Threat models: the Linf, L2 and L1 balls around an image, intersected with [0,1].

An attack with a ``norm`` field reads everything norm-specific from here: validating
its radius, measuring a perturbation, projecting onto the ball and the box, taking a
random start in it and the steepest-ascent direction of a gradient. Linf keeps the
arithmetic the attacks always had (a clamp to ``linf_box``), so Linf results do not
change. Radii are in the [0,1] pixel scale for every norm, as AutoAttack and
RobustBench give them (an L2 radius of 2.0 on MNIST, an L1 radius of 10).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from aerobust.attacks.base import batch_view, check_number
from aerobust.errors import UserError

NORMS = ("Linf", "L2", "L1")


def check_norm(attack: str, norm: object) -> str:
    """The norm's canonical spelling (``linf``/``l2``/``l1`` are accepted), or a one-line
    ``UserError``."""
    spelled = {n.lower(): n for n in NORMS}
    if not isinstance(norm, str) or norm.lower() not in spelled:
        raise UserError(f"{attack}: norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return spelled[norm.lower()]


def check_eps(attack: str, norm: str, eps: object) -> None:
    """Linf radii lie in [0, 1] (a larger one allows every image); L2 and L1 radii are
    any non-negative number, in [0,1] pixel units summed over pixels (0 is the clean
    point, a single forward)."""
    check_number(attack, "eps", eps, 0.0, 1.0 if norm == "Linf" else math.inf)


def size(delta: Tensor, norm: str) -> Tensor:
    """Each sample's perturbation size in ``norm``, (N,)."""
    flat = delta.flatten(1)
    if norm == "Linf":
        return flat.abs().amax(dim=1)
    if norm == "L2":
        return flat.norm(dim=1)
    return flat.abs().sum(dim=1)


def l2_ball(x: Tensor, z: Tensor, eps: float) -> Tensor:
    """``z`` pulled radially into the L2 ball of radius ``eps`` around ``x``, then into
    [0,1]. Not the exact projection onto the intersection, but a point of it: ``x`` lies
    in [0,1], so clamping a coordinate to [0,1] only moves it closer to ``x``'s."""
    delta = z - x
    scale = (eps / size(delta, "L2").clamp_min(1e-12)).clamp_max(1.0)
    return (x + delta * batch_view(scale, delta)).clamp_(0.0, 1.0)


def l1_box(x: Tensor, z: Tensor, eps: float) -> Tensor:
    """The exact Euclidean projection of ``z`` onto the L1 ball of radius ``eps`` around
    ``x`` intersected with [0,1] (the projection L1-APGD needs, Croce & Hein 2021).

    By the KKT conditions coordinate i moves by ``sign(z_i - x_i) * clamp(|z_i - x_i| -
    lam, 0, u_i)``, where ``u_i`` is the room the box leaves in that direction and ``lam
    >= 0`` the smallest threshold whose total ``g(lam)`` is at most ``eps``. ``g`` is
    piecewise linear and decreasing, with a kink where a coordinate starts moving
    (``lam = |d_i|``) and where it stops being capped (``lam = |d_i| - u_i``): sorting
    the kinks gives ``g`` at each of them by cumulative sums, and ``lam`` exactly by
    interpolation, for every sample at once.
    """
    shape = z.shape
    x_flat, d = x.flatten(1), (z - x).flatten(1)
    magnitude = d.abs()
    room = torch.where(d >= 0, 1.0 - x_flat, x_flat).clamp_min(0.0)
    capped = torch.minimum(magnitude, room)  # the box alone, lam = 0
    total = capped.sum(dim=1)
    inside = total <= eps
    if bool(inside.all()):
        return (x_flat + d.sign() * capped).reshape(shape)
    # Descending in lam: a coordinate enters the sum (slope -1 more) at |d_i| and leaves
    # it (slope +1) at |d_i| - u_i.
    kinks = torch.cat([magnitude, magnitude - room], dim=1)
    change = torch.cat([torch.ones_like(d), -torch.ones_like(d)], dim=1)
    kinks, order = kinks.sort(dim=1, descending=True)
    active = change.gather(1, order).cumsum(dim=1)  # coordinates moving just below each kink
    drop = kinks[:, :-1] - kinks[:, 1:]
    g = torch.cat([torch.zeros_like(kinks[:, :1]), (active[:, :-1] * drop).cumsum(dim=1)],
                  dim=1)  # g at each kink
    # The last kink with g <= eps: lam lies below it, on the segment it opens.
    k = ((g <= eps).sum(dim=1, keepdim=True) - 1).clamp_min(0)
    lam = kinks.gather(1, k) - (eps - g.gather(1, k)) / active.gather(1, k).clamp_min(1)
    lam = torch.where(batch_view(inside, lam), 0.0, lam.clamp_min(0.0))
    moved = torch.minimum((magnitude - lam).clamp_min(0.0), room)
    return (x_flat + d.sign() * moved).reshape(shape)


def project(norm: str, eps: float, x: Tensor, z: Tensor, lo: Tensor | None = None,
            hi: Tensor | None = None) -> Tensor:
    """``z`` moved into the ``norm`` ball of radius ``eps`` around ``x`` and into [0,1]
    (Linf: clamped in place to ``lo``/``hi``, ``base.linf_box``)."""
    if norm == "Linf":
        return z.clamp_(lo, hi)
    return l2_ball(x, z, eps) if norm == "L2" else l1_box(x, z, eps)


def normal_starts(x: Tensor, seed: int, restarts: int) -> Tensor:
    """Gaussian noise for every sample and restart, ``(N, restarts, ...)``, drawn as
    ``pgd.uniform_starts`` draws its uniform noise (restart by restart, from a CPU
    generator seeded with ``seed``), so starts depend on neither block nor device."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randn(x.shape, generator=generator, dtype=x.dtype)
                        for _ in range(restarts)], dim=1)


def start(norm: str, eps: float, x: Tensor, noise: Tensor) -> Tensor:
    """A random start from Gaussian ``noise`` (L2, L1): on the L2 sphere of radius
    ``eps`` (then clamped to [0,1]), or ``x + noise`` projected onto the L1 ball and the
    box, as AutoAttack starts them (Linf starts stay in the attacks, unchanged)."""
    if norm == "L2":
        direction = noise / batch_view(size(noise, "L2").clamp_min(1e-12), noise)
        return (x + eps * direction).clamp_(0.0, 1.0)
    return l1_box(x, x + noise, eps)


def l2_direction(grad: Tensor) -> Tensor:
    """The unit-L2 steepest-ascent direction, zero where the gradient is."""
    return grad / batch_view(size(grad, "L2").clamp_min(1e-12), grad)


def sparse_direction(grad: Tensor, share: Tensor) -> Tensor:
    """The L1 step of Croce & Hein (2021): signs of the gradient on the top ``share`` (per
    sample) of its coordinates by magnitude, divided by their count, so the step has L1
    norm 1. The steepest L1 direction moves one coordinate only, which the box stops
    at once; spreading it over the largest ones keeps it useful."""
    flat = grad.flatten(1)
    n = flat.shape[1]
    ranked = flat.abs().sort(dim=1).values
    cut = ((1 - share) * n).long().clamp(0, n - 1).unsqueeze(1)
    chosen = flat.abs() >= ranked.gather(1, cut)
    signs = flat.sign() * chosen
    count = signs.abs().sum(dim=1, keepdim=True).clamp_min(1.0)
    return (signs / count).reshape(grad.shape)
