"""evaluate(): accuracies, perturbation statistics, batching, and the eps sweep sanity
checks on a trained model (stronger attack, larger eps: never more robust)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from aerobust.attacks import FGSM, PGD, DeepFool, Evaluation, Execution, evaluate, get
from aerobust.errors import UserError

EPSILONS = [0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3]


def test_robust_accuracy_falls_with_eps_and_pgd_beats_fgsm(digits: Any, trained: nn.Module) -> None:
    x, y = digits.x[:512], digits.y[:512]
    fgsm = [evaluate(trained, x, y, FGSM(eps=eps)).robust_accuracy for eps in EPSILONS]
    pgd = [evaluate(trained, x, y, PGD(eps=eps)).robust_accuracy for eps in EPSILONS]
    clean = evaluate(trained, x, y, FGSM(eps=0.0)).clean_accuracy
    assert fgsm[0] == pgd[0] == clean
    assert fgsm == sorted(fgsm, reverse=True)
    assert pgd == sorted(pgd, reverse=True)
    assert all(p <= f for p, f in zip(pgd, fgsm, strict=True))
    assert pgd[-1] < 0.05 < clean - 0.5  # not vacuous: the attacks do work
    assert any(p < f for p, f in zip(pgd, fgsm, strict=True))


def test_fields_and_statistics(digits: Any, trained: nn.Module) -> None:
    x, y = digits.x[:100], digits.y[:100]
    attack = FGSM(eps=0.1)
    report = evaluate(trained, x, y, attack, batch_size=32)
    result = attack(trained, x, y)
    correct = trained(x).argmax(1) == y
    flipped = correct & result.success
    assert isinstance(report, Evaluation)
    assert report.n == 100 and report.attack == "fgsm"
    assert report.params == {"eps": 0.1, "clip": True, "eot": 1}
    assert report.execution == {"block_size": 32, "channels_last": True, "device": "cpu"}
    assert report.clean_accuracy == pytest.approx(correct.float().mean().item())
    robust = correct & ~result.success
    assert report.robust_accuracy == pytest.approx(robust.float().mean().item())
    assert report.median_l2 == pytest.approx(result.l2[flipped].double().quantile(0.5).item())
    assert report.mean_l2 == pytest.approx(result.l2[flipped].double().mean().item())
    assert report.median_linf == pytest.approx(0.1, abs=1e-6)
    assert (report.forwards, report.backwards) == (4 * 2, 4 * 1)  # 4 batches
    assert report.seconds > 0 and report.images_per_second == pytest.approx(100 / report.seconds)
    assert report.adversarials is None


def test_to_dict_is_json_ready(digits: Any, trained: nn.Module) -> None:
    report = evaluate(trained, digits.x[:20], digits.y[:20], get("pgd", eps=0.1, steps=3))
    row = report.to_dict()
    assert "adversarials" not in row
    assert json.loads(json.dumps(row)) == row
    assert row["params"]["steps"] == 3
    assert row["execution"] == {"block_size": 20, "channels_last": True, "device": "cpu"}


def test_runs_and_records_the_resolved_execution(
    digits: Any, recorder: type[nn.Module], conv: Callable[..., nn.Module]
) -> None:
    """What a result records is what ran, never None (the default): on the CPU blocks
    of at most 64, in NHWC; a given policy reaches every batch's call."""
    x, y = digits.x[:100], digits.y[:100]
    model = recorder(conv())
    default = evaluate(model, x, y, FGSM(eps=0.1), batch_size=100)
    assert default.execution == {"block_size": 64, "channels_last": True, "device": "cpu"}
    # first, 4 forwards of 8 points tell whether the model is random (attacks.judgment);
    # per batch: the clean forward, FGSM's step per block, then its success check per block
    assert [len(b) for b in model.seen] == [8] * 4 + [100, 50, 50, 50, 50]
    model.seen.clear()
    given = evaluate(model, x, y, FGSM(eps=0.1), batch_size=40,
                     execution=Execution(block_size=16, channels_last=False))
    assert given.execution == {"block_size": 16, "channels_last": False, "device": "cpu"}
    assert [len(b) for b in model.seen] == [8] * 4 + [40, 13, 13, 14, 13, 13, 14] * 2 + [
        20, 10, 10, 10, 10]
    assert "block_size" not in given.params and "channels_last" not in given.params


def test_no_success_gives_none_statistics(digits: Any, trained: nn.Module) -> None:
    report = evaluate(trained, digits.x[:50], digits.y[:50], FGSM(eps=0.0))
    assert report.median_l2 is None and report.mean_l2 is None and report.median_linf is None
    assert report.robust_accuracy == report.clean_accuracy


def test_a_sample_wrong_on_clean_input_is_not_robust(affine: Any) -> None:
    """DeepFool moves every point to another class; label each point with that class:
    the attack then 'fails' everywhere, yet no sample was right to begin with."""
    reached = affine.model(DeepFool()(affine.model, affine.x, affine.y).x_adv).argmax(1)
    report = evaluate(affine.model, affine.x, reached, DeepFool())
    assert report.clean_accuracy == 0 and report.robust_accuracy == 0
    assert report.median_l2 is None


def test_batching_does_not_change_results(digits: Any, trained: nn.Module) -> None:
    x, y = digits.x[:70], digits.y[:70]
    attack, one_block = FGSM(eps=0.05), Execution(block_size=1000)
    small = evaluate(trained, x, y, attack, batch_size=8, keep_adversarials=True,
                     execution=one_block)
    whole = evaluate(trained, x, y, attack, batch_size=1000, keep_adversarials=True,
                     execution=one_block)
    assert small.adversarials is not None and whole.adversarials is not None
    torch.testing.assert_close(small.adversarials, whole.adversarials)
    torch.testing.assert_close(small.adversarials,
                               attack(trained, x, y, execution=one_block).x_adv)
    assert small.robust_accuracy == whole.robust_accuracy
    assert small.forwards == 9 * whole.forwards


def test_progress_bar(digits: Any, trained: nn.Module, capsys: pytest.CaptureFixture) -> None:
    evaluate(trained, digits.x[:40], digits.y[:40], FGSM(eps=0.1), batch_size=16, progress=True)
    err = capsys.readouterr().err
    # a bar over the 40 images that clears itself when done (reproduce's overall bar
    # stays above it)
    assert "fgsm" in err and "/40 [" in err and err.rstrip(" ").endswith("\r")


def test_bad_arguments(digits: Any, trained: nn.Module) -> None:
    with pytest.raises(UserError, match="batch_size"):
        evaluate(trained, digits.x[:4], digits.y[:4], FGSM(eps=0.1), batch_size=0)
    with pytest.raises(UserError, match="as many labels"):
        evaluate(trained, digits.x[:4], digits.y[:3], FGSM(eps=0.1))
    with pytest.raises(UserError, match="as many labels"):
        evaluate(trained, digits.x[:0], digits.y[:0], FGSM(eps=0.1))
