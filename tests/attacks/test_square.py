"""Square: validation, every query at a vertex of the eps-ball within [0,1], the kept
iterate and an honest success mask, reproducibility, no gradients, restarts, cost with
early exit, and that it breaks a defense whose gradients are zero where PGD fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from aerobust.attacks import PGD, Execution, Square, get
from aerobust.attacks.losses import margin
from aerobust.attacks.square import square_share, square_side
from aerobust.errors import UserError
from tests.attacks.replay import active_rows

BLOCK_16, BLOCK_64, BLOCK_128 = (Execution(block_size=b) for b in (16, 64, 128))


class Round(nn.Module):
    """Quantises pixels to 8 levels: the gradient through it is zero everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 7) / 7


def robust(result: Any) -> float:
    return 1 - result.success.float().mean().item()


def test_registered_with_defaults() -> None:
    attack = get("square", eps=0.1)
    assert isinstance(attack, Square)
    assert attack.params() == {
        "eps": 0.1, "queries": 5000, "p_init": 0.8, "restarts": 1, "loss": "margin",
        "seed": 0, "eot": 1, "norm": "Linf",
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"eps": -0.1}, "eps must be in"),
        ({"eps": 8}, "did you mean 8/255"),
        ({"eps": float("nan")}, "eps must be a number"),
        ({"eps": 0.1, "queries": 0}, "queries must be in"),
        ({"eps": 0.1, "queries": 2.5}, "queries must be an integer"),
        ({"eps": 0.1, "p_init": 0.0}, r"p_init must be in \(0, 1\]"),
        ({"eps": 0.1, "p_init": 1.5}, "p_init must be in"),
        ({"eps": 0.1, "restarts": 0}, "restarts must be in"),
        ({"eps": 0.1, "seed": -1}, "seed must be in"),
        ({"eps": 0.1, "loss": "hinge"}, "loss must be one of"),
    ],
)
def test_bad_parameters_raise_one_line_user_errors(params: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        Square(**params)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("square: ")


def test_schedule_halves_p_on_the_papers_iterations_scaled_to_the_budget() -> None:
    assert [square_share(0.8, it, 10_000) for it in (0, 10, 11, 50, 51, 8000, 8001, 9999)] \
        == [0.8, 0.8, 0.4, 0.4, 0.2, 0.8 / 256, 0.8 / 512, 0.8 / 512]
    assert square_share(0.8, 5, 1000) == square_share(0.8, 50, 10_000) == 0.4
    assert [square_side(p, 8, 8) for p in (1.0, 0.8, 0.1, 0.01, 1e-4)] == [8, 7, 3, 1, 1]
    assert square_side(0.5, 1, 20) == 1  # a (1 x D) "image": single features


@pytest.mark.parametrize(("eps", "restarts"), [(0.03, 2), (0.1, 1), (0.6, 1)])
def test_every_query_is_a_vertex_of_the_ball_within_0_1(
    eps: float, restarts: int, digits: Any, trained: nn.Module, recorder: type[nn.Module],
) -> None:
    """After the clean forward every pixel of every query is x+eps or x-eps, clipped
    to [0,1] (at eps=0.6 clipping binds at both ends), and so is x_adv, except for
    samples the clean forward already got wrong, which keep x."""
    x, y = digits.x[:64], digits.y[:64]
    model = recorder(trained)
    result = Square(eps=eps, queries=40, restarts=restarts)(model, x, y, execution=BLOCK_64)
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    rows = active_rows(model.seen, y, trained)
    assert torch.equal(model.seen[0], x)
    assert len(model.seen) > 2
    for batch, r in zip(model.seen[1:], rows[1:], strict=True):
        assert ((batch == lo[r]) | (batch == hi[r])).all()
        assert (batch - x[r]).abs().max() <= eps + 1e-6
    with torch.no_grad():
        clean_wrong = trained(x).argmax(1) != y
    assert torch.equal(result.x_adv[clean_wrong], x[clean_wrong])
    vertex = (result.x_adv == lo) | (result.x_adv == hi)
    assert vertex[~clean_wrong].all()
    assert result.linf.max() <= eps + 1e-6
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    if eps == 0.6:
        assert (result.x_adv == 0).any() and (result.x_adv == 1).any()


def test_keeps_the_first_fooling_query_else_the_best(
    digits: Any, trained: nn.Module, recorder: type[nn.Module]
) -> None:
    """A fooled sample keeps the query that first fooled it (its last recorded one);
    an unfooled one keeps its highest-margin query; success is honest."""
    x, y = digits.x[:64], digits.y[:64]
    model = recorder(trained)
    result = Square(eps=0.08, queries=60)(model, x, y, execution=BLOCK_64)
    assert 0 < result.success.sum() < 64  # both cases occur
    last, best = torch.empty_like(x), torch.full((64,), -torch.inf)
    for batch, rows in zip(model.seen, active_rows(model.seen, y, trained), strict=True):
        last[rows] = batch
        with torch.no_grad():
            best[rows] = torch.maximum(best[rows], margin(trained(batch), y[rows]))
    with torch.no_grad():
        logits = trained(result.x_adv)
    assert torch.equal(result.success, logits.argmax(1) != y)
    hit = result.success
    assert torch.equal(result.x_adv[hit], last[hit])
    assert torch.equal(margin(logits, y)[~hit], best[~hit])


def test_success_is_honest_on_a_conv_model(digits: Any, conv: Callable[..., nn.Module]) -> None:
    model = conv().eval()
    x, y = digits.x[:48], digits.y[:48]
    with torch.no_grad():
        y = model(x).argmax(1)  # an untrained model: attack its own predictions
    for layout in (False, True):
        policy = Execution(channels_last=layout)
        result = Square(eps=0.05, queries=30)(model, x, y, execution=policy)
        with torch.no_grad():
            assert torch.equal(result.success, model(result.x_adv).argmax(1) != y)
        assert 0 < result.success.sum() < 48
        assert result.backwards == 0


def test_reproducible_for_a_seed(digits: Any, trained: nn.Module) -> None:
    x, y = digits.x[:40], digits.y[:40]
    first = Square(eps=0.05, queries=30, seed=3)(trained, x, y, execution=BLOCK_16)
    again = Square(eps=0.05, queries=30, seed=3)(trained, x, y, execution=BLOCK_16)
    other = Square(eps=0.05, queries=30, seed=4)(trained, x, y, execution=BLOCK_16)
    assert torch.equal(first.x_adv, again.x_adv)
    assert torch.equal(first.success, again.success)
    assert first.forwards == again.forwards
    assert not torch.equal(first.x_adv, other.x_adv)


@pytest.mark.parametrize(("queries", "restarts"), [(1, 1), (20, 1), (10, 3)])
def test_cost_when_nothing_is_fooled(queries: int, restarts: int, affine: Any) -> None:
    """Documented cost: one clean forward, then (queries + 1) per restart; never a
    backward. Flat (N, D) inputs are 1 x D images. The boundary is >= 0.03 away in L2,
    beyond an Linf ball of 1e-4 in 20 dimensions."""
    result = Square(eps=1e-4, queries=queries, restarts=restarts)(
        affine.model, affine.x, affine.y)
    assert not result.success.any()
    assert result.forwards == 1 + restarts * (queries + 1)
    assert result.backwards == 0
    assert result.linf.max() <= 1e-4 + 1e-12


def test_leaves_early_when_everything_is_fooled(digits: Any, trained: nn.Module) -> None:
    x, y = digits.x[:128], digits.y[:128]
    result = Square(eps=0.4, queries=1000, restarts=2)(trained, x, y, execution=BLOCK_128)
    assert result.success.all()
    assert result.forwards < 100  # measured 22; the budget is 2 * 1001 + 1
    wrong = (y + 1) % 10  # every point is already "fooled": one clean forward
    again = Square(eps=0.4, queries=1000)(trained, x, wrong)
    assert again.success.all()
    assert again.forwards == 2  # one per block of 64
    assert torch.equal(again.x_adv, x)


def test_restarts_reattack_only_unfooled_samples(
    digits: Any, trained: nn.Module, recorder: type[nn.Module]
) -> None:
    x, y = digits.x[:64], digits.y[:64]
    once = Square(eps=0.1, queries=20)(trained, x, y, execution=BLOCK_64)
    model = recorder(trained)
    thrice = Square(eps=0.1, queries=20, restarts=3)(model, x, y, execution=BLOCK_64)
    sizes = [len(batch) for batch in model.seen]
    survivors = 64 - int(once.success.sum())
    assert 0 < survivors < 64
    assert sizes[0] == 64 and sizes[22] == survivors  # clean, 21 queries, restart 2
    assert sizes == sorted(sizes, reverse=True)
    # Restart 1 is the same run: what it fooled stays fooled with the same adversarial.
    assert torch.equal(thrice.x_adv[once.success], once.x_adv[once.success])
    assert thrice.success[once.success].all()
    assert thrice.success.sum() > once.success.sum()  # measured 10 > 6


def test_eps_zero_is_a_single_forward(digits: Any, trained: nn.Module) -> None:
    x, y = digits.x[:32], digits.y[:32]
    result = Square(eps=0.0)(trained, x, y)
    assert torch.equal(result.x_adv, x)
    assert (result.forwards, result.backwards) == (1, 0)


def test_does_not_modify_its_input(digits: Any, trained: nn.Module) -> None:
    x = digits.x[:16].clone()
    Square(eps=0.1, queries=10)(trained, x, digits.y[:16])
    assert torch.equal(x, digits.x[:16])


def test_more_queries_never_raise_robust_accuracy(digits: Any, trained: nn.Module) -> None:
    """Measured 0.93 / 0.80 / 0.60 for 10 / 50 / 250 queries (seeds 0-3 agree within
    0.04). Not monotone by construction: p's schedule scales with the budget, so each
    budget is its own random walk, and budgets 3x apart are far enough for a fixed seed."""
    x, y = digits.x[:128], digits.y[:128]
    accuracies = [robust(Square(eps=0.1, queries=q)(trained, x, y, execution=BLOCK_128))
                  for q in (10, 50, 250)]
    assert accuracies == sorted(accuracies, reverse=True)
    assert accuracies[0] - accuracies[-1] > 0.15, accuracies


def test_breaks_a_defense_with_zero_gradients_where_pgd_fails(
    digits: Any, trained: nn.Module
) -> None:
    """Quantising the input zeroes every gradient, so PGD only moves by its random
    start; Square reads scores only. At eps=0.1 (PGD on the plain MLP: 0.66 robust)
    measured robust accuracy: PGD-40 0.97, Square-300 0.52 (clean 0.98; seeds 0-3 within
    0.01)."""
    model = nn.Sequential(Round(), trained).eval()
    x, y = digits.x[:200], digits.y[:200]
    pgd = robust(PGD(eps=0.1, steps=40)(model, x, y))
    square = robust(Square(eps=0.1, queries=300)(model, x, y))
    assert pgd > 0.9, pgd
    assert square < 0.7, square
