"""The audit of defenses that reject and of defenses that choose: the adaptive detector
rungs on a detector only non-adaptive attacks fail to evade, none on a model that does
not reject, and PuVAE's differentiable surrogate for its arg-min over labels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aerobust.audit import BUDGETS, audit
from aerobust.audit.ladder import build_rungs
from aerobust.audit.stages import split
from aerobust.models.puvae import PuVAE
from aerobust.rejection import rejected
from aerobust.surrogate import descriptions, with_surrogates
from tests.test_defenses import ToyDetector

pytestmark = pytest.mark.usefixtures("one_thread")


def _toy_points(n: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """On the data (b = 0.5), class 0; a wrong class lies on the data at a > 0.4."""
    x = torch.zeros(n, 1, 1, 2)
    x[:, 0, 0, 0] = torch.linspace(0.3, 0.35, n)
    x[:, 0, 0, 1] = 0.5
    return x, torch.zeros(n, dtype=torch.long)


def test_a_detector_only_non_adaptive_attacks_fail_to_evade_is_masking() -> None:
    x, y = _toy_points()
    found = audit(ToyDetector(), x, y, 0.25, budget="quick")
    names = [r["name"] for r in found.rungs]
    assert names[:5] == ["pgd-ce", "apgd-ce", "apgd-dlr", "apgd-detector", "apgd-t-detector"]
    broken = {r["name"]: r["broken"] for r in found.rungs}
    # PGD, APGD-CE and APGD-DLR follow the classifier off the data into the detector
    assert broken["pgd-ce"] == broken["apgd-ce"] == broken["apgd-dlr"] == 0
    assert found.baseline_robust_accuracy == 1.0 and found.robust_accuracy == 0.0
    assert found.closed_by == "apgd-detector"
    assert {p["broken_by"] for p in found.ledger} == {"apgd-detector"}
    assert found.verdict == "masking"
    check = next(c for c in found.checks if c.name == "detector-adaptive")
    assert not check.passed and check.value == len(x)
    reason = next(r for r in found.reasons if "detector-adaptive" in r)
    assert "paper's PGD and the ladder's CE/DLR rungs" in reason
    assert "adaptive detector loss (apgd-detector" in reason
    assert any("rejects inputs" in note for note in found.notes)
    # the eps curve attacks the detector too: the non-adaptive cascade alone stays at 1
    assert min(p["robust_accuracy"] for p in found.curve) < 1.0


def test_no_detector_rung_on_a_model_that_does_not_reject() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).eval()
    x = torch.rand(1, 1, 4, 4)
    names = [r.name for r in build_rungs(model, split(model, x), 0.1, BUDGETS["standard"], 0,
                                         [], False)]
    assert names == ["pgd-ce", "apgd-ce", "apgd-dlr", "apgd-t", "apgd-t-rest", "square",
                     "apgd-dlr-more"]
    assert with_surrogates(model) is None and descriptions(model) == []


# --- PuVAE's arg-min over labels and its surrogate -------------------------------------

def _puvae(labels: int = 4) -> PuVAE:
    """A PuVAE on 8x8 images whose decoder ignores z: each label has one reconstruction,
    so the hard choice is piecewise constant in x and only the choice depends on it."""
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(64, labels))
    model = PuVAE(classifier, image_size=8, num_classes=labels, latent=4, width=4)
    with torch.no_grad():
        model.decoder[0].weight[:, : model.latent] = 0
        model.decoder[0].weight[:, model.latent :] *= 200  # labels far apart
        model.threshold.fill_(1.0)
    return model.eval()


def _prototypes(model: PuVAE) -> torch.Tensor:
    """The one reconstruction of each label, ``(K, 1, 8, 8)``."""
    labels = torch.arange(model.num_classes)
    with torch.no_grad():
        return model.decode(torch.zeros(len(labels), model.latent), labels)


def test_the_surrogate_is_the_hard_choice_where_one_label_clearly_wins() -> None:
    model = _puvae()
    x = _prototypes(model)  # each is its own label's reconstruction: error 0 there
    with torch.no_grad():
        _, rmse = model.reconstructions(x)
        gaps = rmse.sort(dim=1).values
        soft = model.surrogate()(x)
        hard = model(x)
    assert (gaps[:, 1] - gaps[:, 0] > 20 * model.surrogate().temperature).all()
    assert torch.allclose(soft, hard, atol=1e-5)
    assert not rejected(hard).any()


def test_the_surrogates_gradient_sees_the_choice_the_hard_one_hides() -> None:
    model = _puvae()
    proto = _prototypes(model)
    # halfway between labels 0 and 1: a step decides which reconstruction is kept
    x = (0.5 * (proto[0] + proto[1])).unsqueeze(0).requires_grad_(True)
    with torch.no_grad():
        _, rmse = model.reconstructions(x)
    assert (rmse[0, :2] - rmse[0, 2:].min() < 0).all()  # labels 0 and 1 are the close ones

    def margin_grad(net: nn.Module) -> torch.Tensor:
        out = net(x)
        (g,) = torch.autograd.grad(out[0, 1] - out[0, 0], x)
        return g

    assert margin_grad(model).abs().max() == 0  # the class logits ignore the choice
    assert margin_grad(model.surrogate()).abs().max() > 0


def test_the_audit_attacks_puvae_through_its_surrogate_and_says_so() -> None:
    """On this PuVAE the class logits' gradient is exactly 0 (only the choice depends on
    x): every rung on the hard model fails, the surrogate's break points, and the record
    names the surrogate."""
    model = _puvae()
    x = _prototypes(model)
    with torch.no_grad():
        y = model(x)[:, :-1].argmax(dim=1)
    found = audit(model, x, y, 0.3, budget="quick")
    rows = {r["name"]: r for r in found.rungs}
    assert {"surrogate-apgd-ce", "surrogate-apgd-dlr", "surrogate-apgd-detector"} <= set(rows)
    assert "softmin" in rows["surrogate-apgd-ce"]["description"]
    assert "through the surrogate" in rows["apgd-t"]["description"]
    assert any(n.startswith("differentiable surrogate: PuVAE's arg-min") for n in found.notes)
    before = ("pgd-ce", "apgd-ce", "apgd-dlr", "apgd-detector", "apgd-t-detector")
    assert all(rows[name]["broken"] == 0 for name in before)
    assert found.clean_accuracy == 1.0 and found.robust_accuracy < 1.0
    assert found.closed_by is not None and found.closed_by.startswith("surrogate-")
