"""How the whole tool judges a prediction, the same way everywhere (``evaluate``, the
``attack`` command, the experiments and the audit).

A deterministic model is judged by one forward. A randomised model (a random
preprocessing, noise, test-time dropout) gives another answer at every forward, and
one forward flatters whoever reads it: an attacker who needed one lucky draw, or a
defense on one good one. It is judged by a majority of ``JUDGE_DRAWS`` fresh forwards:
an input counts as misclassified when more than half of them misclassify it, i.e.
about when the model misclassifies it with probability above 1/2. ``JUDGE_DRAWS`` is
odd, so there are no ties; 25 draws put a point whose true error rate is 0.3 or 0.7 on
the right side of 1/2 97.8% of the time.

Where a point's verdict is the best of several attacks (the audit's ladder, an attack's
restarts), each of them a fresh majority, lucky majorities add up: a point misclassified
with probability 0.4 passes one majority of 25 with probability 0.15, and one of eight
with probability 0.73. There a claimed break counts only when a second, independent
majority agrees (``confirmed``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aerobust.rejection import fooled as wrong_class
from aerobust.rejection import rejects

JUDGE_DRAWS = 25
RANDOMNESS_FORWARDS = 4  # forwards compared to tell a random model from a deterministic one
RANDOMNESS_POINTS = 8  # of the points at hand, the ones those forwards see


@torch.no_grad()
def is_random(model: nn.Module, x: Tensor) -> bool:
    """Whether forwards of the same ``x`` differ (several of them: a model that picks
    one of a few preprocessings can repeat itself twice in a row)."""
    first = model(x)
    return any(not torch.equal(first, model(x)) for _ in range(RANDOMNESS_FORWARDS - 1))


def judge_draws(model: nn.Module, x: Tensor) -> int:
    """The forwards that judge ``model``: 1, or ``JUDGE_DRAWS`` for a random model
    (told from a few of the points ``x``: randomness shows on any input)."""
    return JUDGE_DRAWS if is_random(model, x[:RANDOMNESS_POINTS]) else 1


@torch.no_grad()
def votes(model: nn.Module, x: Tensor, y: Tensor, draws: int, *,
          clean: bool = False) -> tuple[Tensor, Tensor]:
    """Whether a majority of ``draws`` fresh forwards misclassify each input, and the
    mean of their outputs. For a model that rejects (``aerobust.rejection``) a rejection
    is an error on a ``clean`` input and a held point on an adversarial one."""
    outs = [model(x) for _ in range(draws)]
    rejecting = rejects(model) and not clean
    wrong = sum(wrong_class(out, y, rejecting).int() for out in outs)
    mean = outs[0] if draws == 1 else torch.stack(outs).mean(dim=0)
    return 2 * wrong > draws, mean


def fooled(model: nn.Module, x: Tensor, y: Tensor, draws: int | None = None, *,
           clean: bool = False) -> Tensor:
    """Whether ``model`` misclassifies each input, judged by ``draws`` forwards (the
    judgment of ``judge_draws`` when None); ``clean``: a rejection counts as an error."""
    return votes(model, x, y, judge_draws(model, x) if draws is None else draws,
                 clean=clean)[0]


def describe(draws: int) -> str:
    """The judgment, in words, for results and reports."""
    return ("one forward (deterministic model)" if draws == 1 else
            f"a majority of {draws} fresh forwards (randomised model)")


def confirmed(model: nn.Module, x: Tensor, y: Tensor, draws: int, claimed: Tensor) -> Tensor:
    """``claimed`` breaks that a second, independent majority of ``draws`` fresh
    forwards confirms (the judgment of a break in a minimum over several attacks)."""
    if draws == 1 or not bool(claimed.any()):
        return claimed
    rows = claimed.nonzero().squeeze(1)
    return claimed.index_put((rows,), fooled(model, x[rows], y[rows], draws))
