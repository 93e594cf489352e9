"""The options the sensitivity experiment varies change what they claim to change, and
nothing when left at their defaults (the other attack tests run the defaults)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from aerobust.attacks import CW, FGSM, DeepFool
from aerobust.errors import UserError


def test_fgsm_without_clipping_can_leave_the_image_range(digits: Any, trained: nn.Module) -> None:
    x, y = digits.x[:64], digits.y[:64]
    clipped = FGSM(eps=0.3)(trained, x, y).x_adv
    free = FGSM(eps=0.3, clip=False)(trained, x, y).x_adv
    assert clipped.min() >= 0 and clipped.max() <= 1
    assert free.min() < 0 or free.max() > 1
    assert torch.equal(free.clamp(0, 1), clipped)  # the clip is the only difference


def test_deepfool_with_a_cap_of_3_stops_at_3(
    digits: Any, trained: nn.Module, recorder: type[nn.Module]
) -> None:
    x, y = digits.x[:64], digits.y[:64]
    model = recorder(trained)
    capped = DeepFool(steps=3)(model, x, y)
    assert len(model.seen) <= 4  # at most steps + 1 forwards: iterates 0..3
    assert capped.backwards <= 3 * 9
    assert capped.success.sum() < DeepFool(steps=50)(trained, x, y).success.sum()


def test_deepfool_clipping_at_the_end_runs_the_unclipped_iterates(
    digits: Any, trained: nn.Module
) -> None:
    x, y = digits.x[:64], digits.y[:64]
    none = DeepFool(clip="none")(trained, x, y)
    assert none.x_adv.min() < 0 or none.x_adv.max() > 1  # the reference knows no box
    end = DeepFool(clip="end", judge="iterate")(trained, x, y)
    assert torch.equal(end.x_adv, none.x_adv.clamp(0, 1))
    assert torch.equal(end.success, none.success)  # judged on the unclipped iterate
    returned = DeepFool(clip="end")(trained, x, y)
    assert torch.equal(returned.x_adv, end.x_adv)
    with torch.no_grad():
        assert torch.equal(returned.success, trained(returned.x_adv).argmax(1) != y)


def test_cw_failure_returns_the_last_iterate_when_asked(digits: Any, trained: nn.Module) -> None:
    x, y = digits.x[:64], digits.y[:64]
    correct = trained(x).argmax(1) == y
    x, y = x[correct], y[correct]
    weak = dict(c_init=1e-6, binary_steps=1, steps=5)
    clean = CW(**weak)(trained, x, y)
    last = CW(**weak, on_failure="last")(trained, x, y)
    assert not clean.success.any() and not last.success.any()
    assert torch.equal(clean.x_adv, x)
    assert (last.l2 > 0).all()  # Adam moved every image, and that image is returned
    assert last.x_adv.min() >= 0 and last.x_adv.max() <= 1
    with torch.no_grad():  # counted unfooled: the model still predicts the label
        assert torch.equal(trained(last.x_adv).argmax(1), y)


@pytest.mark.parametrize("made", [lambda: DeepFool(clip="sometimes"),
                                  lambda: DeepFool(judge="before"),
                                  lambda: CW(on_failure="zero"), lambda: FGSM(eps=0.1, clip=1)])
def test_unknown_option_values_are_user_errors(made: Any) -> None:
    with pytest.raises(UserError):
        made()
