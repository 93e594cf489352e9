"""Randomised defenses: the audit attacks them as hard as a plain EOT-PGD, and the whole
tool judges a random model one way (``attacks.judgment``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aerobust import attacks
from aerobust.attacks.judgment import JUDGE_DRAWS, describe, fooled, judge_draws
from aerobust.audit import audit
from tests.audit.random_zoo import DEFENSES, EPS, defended, digits, eot_pgd

pytestmark = pytest.mark.usefixtures("one_thread")
N = 60


def _points() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = digits()
    return x[1400 : 1400 + N], y[1400 : 1400 + N]


@pytest.mark.parametrize("name", list(DEFENSES))
def test_the_audit_is_at_most_eot_pgd_plus_3_points(name: str) -> None:
    model, (x, y) = defended(name), _points()
    torch.manual_seed(0)
    reference = eot_pgd(model, x, y).double().mean().item()
    result = audit(model, x, y, EPS, budget="quick")
    assert result.random and any("majority of 25" in note for note in result.notes)
    assert result.robust_accuracy <= reference + 0.03, (result.robust_accuracy, reference)
    assert result.verdict == "masking"  # PGD without EOT is far from either


def test_evaluate_judges_a_random_model_by_a_majority_of_fresh_draws() -> None:
    model, (x, y) = defended("resize-pad"), _points()
    assert judge_draws(model, x) == JUDGE_DRAWS
    torch.manual_seed(0)
    ev = attacks.evaluate(model, x, y, attacks.PGD(eps=EPS, steps=10))
    assert ev.judgment == describe(JUDGE_DRAWS)
    # clean accuracy is a majority's too: another majority of fresh draws agrees with it
    torch.manual_seed(1)
    majority = (~fooled(model, x, y)).double().mean().item()
    assert ev.clean_accuracy == pytest.approx(majority, abs=0.05)
    deterministic = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert attacks.evaluate(deterministic, x, y, attacks.FGSM(eps=EPS)).judgment == describe(1)
