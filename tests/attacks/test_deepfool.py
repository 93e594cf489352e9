"""DeepFool: exact on affine models, overshoot on the total, reference = prediction,
finished samples leave the batch, and the backward budget."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from aerobust.attacks import DeepFool
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


def test_reference_class_is_the_prediction_not_the_label(affine: Any) -> None:
    first = DeepFool()(affine.model, affine.x, affine.y)
    reached = affine.model(first.x_adv).argmax(1)
    # Labelling every point with the class DeepFool reaches changes nothing but success.
    again = DeepFool()(affine.model, affine.x, reached)
    assert torch.equal(again.x_adv, first.x_adv)
    assert first.success.all() and not again.success.any()


def test_finished_samples_leave_the_batch(
    digits: Any, trained: nn.Module, recorder: type[nn.Module]
) -> None:
    x, y = digits.x[:64], digits.y[:64]
    model = recorder(trained)
    result = DeepFool(steps=50)(model, x, y)
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
        result = DeepFool(steps=steps, num_classes=num_classes)(trained, digits.x[:n], digits.y[:n])
        assert result.backwards <= steps * (num_classes - 1)
        assert result.forwards <= steps + 1


def test_more_candidates_than_classes_is_a_user_error(affine: Any) -> None:
    with pytest.raises(UserError, match="num_classes=6 but the model has 5 classes"):
        DeepFool(num_classes=6)(affine.model, affine.x, affine.y)
