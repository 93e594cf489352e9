"""Carlini-Wagner L2: near-minimal on affine models, keeps x when it fails, honours the
confidence, and its pass counts."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from aerobust.attacks import CW


def test_l2_within_5_percent_of_the_analytic_minimum(affine: Any) -> None:
    result = CW()(affine.model, affine.x, affine.y)
    assert result.success.all()
    # Never below the true minimum (up to the tanh round trip), at most 5% above it.
    assert (result.l2 >= affine.distance - 1e-6).all()
    assert (result.l2 <= 1.05 * affine.distance).all(), result.l2 / affine.distance


def test_a_sample_never_fooled_keeps_its_input(digits: Any, trained: nn.Module) -> None:
    x, y = digits.x[:64], digits.y[:64]
    correct = trained(x).argmax(1) == y
    x, y = x[correct], y[correct]
    result = CW(c_init=1e-6, binary_steps=1, steps=5)(trained, x, y)
    assert not result.success.any()
    assert torch.equal(result.x_adv, x)
    assert (result.l2 == 0).all()


def test_successes_clear_the_confidence_margin(digits: Any, trained: nn.Module) -> None:
    x, y = digits.x[:64], digits.y[:64]
    result = CW(confidence=5.0, c_init=1.0, binary_steps=4, steps=100)(trained, x, y)
    assert result.success.sum() >= 10  # not vacuous
    logits = trained(result.x_adv[result.success])
    labels = y[result.success].unsqueeze(1)
    other = logits.scatter(1, labels, -torch.inf).amax(1)
    assert (other - logits.gather(1, labels).squeeze(1) >= 5.0 - 1e-4).all()


def test_binary_search_raises_c_until_it_succeeds_and_keeps_the_best(affine: Any) -> None:
    """From a constant far too small, failures multiply c by 10 until attacks succeed;
    later binary-search steps never give up a smaller perturbation found earlier."""
    def run(binary_steps: int) -> Any:
        attack = CW(c_init=1e-6, binary_steps=binary_steps, steps=200)
        return attack(affine.model, affine.x, affine.y)

    assert not run(1).success.any()
    four, six = run(4), run(6)
    assert four.success.all()
    assert (six.l2 <= four.l2).all()


def test_pass_counts_and_early_abort(affine: Any) -> None:
    full = CW(binary_steps=2, steps=50, abort_early=False)(affine.model, affine.x, affine.y)
    assert full.forwards == full.backwards == 2 * 50
    early = CW(binary_steps=2, steps=50)(affine.model, affine.x, affine.y)
    assert early.forwards == early.backwards < 2 * 50
