"""The audit's threat model: which radii a norm allows, the radii of the eps curve, and
what the report says about a norm. Linf keeps what the audit always did.

Radii are in the [0,1] pixel scale for every norm, as AutoAttack and RobustBench give
them (MNIST: Linf 0.3, L2 2.0, L1 10).
"""

from __future__ import annotations

import math

from aerobust.attacks.norms import check_norm
from aerobust.errors import UserError


def check(norm: object, eps: object) -> str:
    """The norm's canonical name, or a one-line ``UserError`` for it or for ``eps``."""
    norm = check_norm("audit", norm)
    number = isinstance(eps, int | float) and not isinstance(eps, bool)
    if norm == "Linf":
        if not number or not 0 <= eps <= 1:
            raise UserError(f"audit: eps must be in [0, 1] pixel units, got {eps!r}"
                            + (f" (did you mean {eps}/255 = {eps / 255:.4g}?)"
                               if number and 1 < eps <= 255 else ""))
    elif not number or not math.isfinite(eps) or eps < 0:
        raise UserError(f"audit: an {norm} eps must be a non-negative number in the [0,1] "
                        f"pixel scale (summed over pixels), got {eps!r}")
    return norm


def reach(norm: str, dims: int) -> float:
    """The radius of the smallest ``norm`` ball around any image of ``dims`` pixels that
    holds the mid-grey image (the Linf ball of radius 0.5): every image of the model's
    input space can reach that one point, so robust accuracy there must be about 0."""
    return 0.5 if norm == "Linf" else 0.5 * math.sqrt(dims) if norm == "L2" else 0.5 * dims


def curve_radii(eps: float, norm: str, dims: int) -> list[float]:
    """The eps curve's radii: eps/4, eps/2, eps, 2 eps and a large one, at least the
    ``reach`` of the norm (Linf radii end at 1, which allows any image)."""
    if norm == "Linf":
        large = min(1.0, max(0.5, 4 * eps))
        radii = (eps / 4, eps / 2, eps, min(1.0, 2 * eps), large)
    else:
        radii = (eps / 4, eps / 2, eps, 2 * eps, max(reach(norm, dims), 4 * eps))
    return sorted({round(e, 6) for e in radii if e > 0})


def notes(norm: str) -> list[str]:
    """What the report must say about the threat model."""
    if norm == "Linf":
        return []
    said = [f"threat model {norm}: eps in the [0,1] pixel scale, as AutoAttack and "
            "RobustBench give it; the eps curve ends where any image reaches mid-grey",
            f"plain PGD-{norm} falls further behind APGD than PGD-Linf does, also on an "
            "undefended model (LeNet5 on MNIST, 200 points, L2 1.5: PGD-40 42.5%, audited "
            "33.0%), so here a gap to the baseline alone is weak evidence of masking: read "
            "the sanity checks and probes"]
    if norm == "L1":
        said.append("no score-based rung in L1 (Square has no L1 variant here): the "
                    "black-box check has nothing to compare")
    return said
