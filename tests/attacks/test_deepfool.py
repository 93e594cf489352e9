"""DeepFool: exact on affine models, overshoot on the total, misclassified samples left
alone, the box cut kept out of the total, finished samples leave the batch, and the
backward budget."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from aerobust.attacks import DeepFool, Execution
from aerobust.errors import UserError


def test_matches_the_analytic_distance_on_an_affine_model(affine: Any) -> None:
    result = DeepFool(overshoot=0.0)(affine.model, affine.x, affine.y)
    assert result.success.all()
    assert result.x_adv.min() > 0 and result.x_adv.max() < 1  # the clip never binds
    torch.testing.assert_close(result.l2, affine.distance, rtol=1e-4, atol=0)
    # One step lands past the nearest facet; the next forward sees the new class.
    assert (result.forwards, result.backwards) == (2, 4)


def test_overshoot_scales_the_total_perturbation(affine: Any) -> None:
    exact = DeepFool(overshoot=0.0)(affine.model, affine.x, affine.y)
    over = DeepFool(overshoot=0.02)(affine.model, affine.x, affine.y)
    torch.testing.assert_close(over.x_adv - affine.x, 1.02 * (exact.x_adv - affine.x))


def test_misclassified_samples_are_left_as_they_are(affine: Any) -> None:
    """A sample misclassified at the start is adversarial already: it keeps its input
    and counts as a success (attacking it could carry it back to its label)."""
    wrong = (affine.y + 1) % 5
    labels = torch.where(torch.arange(len(wrong)) % 2 == 0, wrong, affine.y)
    mixed = DeepFool()(affine.model, affine.x, labels)
    even = torch.arange(len(labels)) % 2 == 0
    assert torch.equal(mixed.x_adv[even], affine.x[even])
    assert mixed.success.all() and (mixed.l2[even] == 0).all()
    alone = DeepFool()(affine.model, affine.x[~even], labels[~even])
    torch.testing.assert_close(mixed.x_adv[~even], alone.x_adv, rtol=0, atol=1e-12)
    assert (mixed.l2[~even] > 0).all()
    every = DeepFool()(affine.model, affine.x, wrong)
    assert torch.equal(every.x_adv, affine.x) and every.success.all()
    assert (every.forwards, every.backwards) == (1, 0)


class _TurningModel(nn.Module):
    """Two pixels (a, b), two classes, ``Z1 - Z0 = 3b - 1.5 + 5a(b - 0.45)``: from
    (0.02, 0.3) the first step pushes ``a`` below 0 and lifts ``b`` past 0.45, where the
    gradient in ``a`` turns positive while the sample is still class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x[:, 0], x[:, 1]
        return torch.stack([torch.zeros_like(a), 3 * b - 1.5 + 5 * a * (b - 0.45)], dim=1)


def test_a_step_cut_off_by_the_box_is_not_carried_on() -> None:
    """The part of a step beyond [0,1] is dropped from the total perturbation, so when
    the gradient turns, the pixel moves back at once (carrying the cut-off part on would
    keep ``a`` at 0 until a later step had undone it)."""
    x = torch.tensor([[0.02, 0.3]], dtype=torch.float64)
    y = torch.tensor([0])
    model = _TurningModel()
    one = DeepFool(steps=1)(model, x, y)
    assert one.x_adv[0, 0] == 0 and not one.success.any()  # a was clipped; still class 0
    with torch.no_grad():
        assert one.x_adv[0, 1] > 0.45 and model(one.x_adv)[0, 1] < 0
    two = DeepFool(steps=2)(model, x, y)
    assert two.success.all()
    assert two.x_adv[0, 0] > 0  # the second step lifted a off the bound


def test_finished_samples_leave_the_batch(
    digits: Any, trained: nn.Module, recorder: type[nn.Module]
) -> None:
    x, y = digits.x[:64], digits.y[:64]
    model = recorder(trained)
    result = DeepFool(steps=50)(model, x, y, execution=Execution(block_size=64))
    sizes = [len(batch) for batch in model.seen]
    assert sizes[0] == 64 and sizes == sorted(sizes, reverse=True) and sizes[-1] < 32
    assert result.forwards == len(sizes)
    assert result.backwards <= (len(sizes) - 1) * 9
    assert result.success.float().mean() > 0.9


def test_unfinished_samples_keep_their_last_iterate(digits: Any, trained: nn.Module) -> None:
    x, y = digits.x[:64], digits.y[:64]
    one = DeepFool(steps=1)(trained, x, y)
    many = DeepFool(steps=30)(trained, x, y)
    assert one.success.sum() < many.success.sum()
    # Samples finished after one step are frozen: more steps do not move them.
    done = one.success & (trained(x).argmax(1) == y)
    assert done.any()
    assert torch.equal(many.x_adv[done], one.x_adv[done])


@pytest.mark.parametrize("num_classes", [2, 3, 10])
def test_backward_budget(num_classes: int, digits: Any, trained: nn.Module) -> None:
    """One backward per non-reference candidate per iteration, for the whole batch."""
    steps = 4
    for n in (1, 128):
        attack = DeepFool(steps=steps, num_classes=num_classes)
        result = attack(trained, digits.x[:n], digits.y[:n], execution=Execution(block_size=n))
        assert result.backwards <= steps * (num_classes - 1)
        assert result.forwards <= steps + 1


def test_more_candidates_than_classes_is_a_user_error(affine: Any) -> None:
    with pytest.raises(UserError, match="num_classes=6 but the model has 5 classes"):
        DeepFool(num_classes=6)(affine.model, affine.x, affine.y)
