"""The audit in L2 and L1: radii per norm, every rung and the eps curve in the norm, every
adversarial within eps in it, FAB-T where asked, and the CLI's --norm."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from aerobust.attacks.norms import size
from aerobust.audit import BUDGETS, audit, core
from aerobust.audit.ladder import build_rungs
from aerobust.audit.stages import split
from aerobust.audit.threat import curve_radii, reach
from aerobust.errors import UserError
from tests.conftest import fit_by_gradient_descent


@pytest.fixture(scope="module")
def digits_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """An MLP trained on sklearn's digits (8x8) in a second, and 60 of its points."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    model = fit_by_gradient_descent(net, x, y, steps=300).eval().requires_grad_(False)
    torch.set_num_threads(threads)
    return model, x[:60], y[:60]


@pytest.mark.parametrize(("norm", "eps", "message"), [
    ("L3", 0.1, "norm must be one of Linf, L2, L1"),
    ("L2", -1.0, "an L2 eps must be a non-negative number"),
    ("L1", math.inf, "an L1 eps must be"),
    ("Linf", 2.0, "eps must be in [0, 1] pixel units"),
])
def test_radius_is_checked_per_norm(norm: str, eps: float, message: str, digits_model: Any
                                    ) -> None:
    model, x, y = digits_model
    with pytest.raises(UserError, match=message.replace("[", r"\[")) as err:
        audit(model, x, y, eps, norm=norm)
    assert "\n" not in str(err.value)


def test_curve_radii_keep_linf_and_reach_mid_grey_in_l2_and_l1() -> None:
    assert curve_radii(0.1, "Linf", 784) == [0.025, 0.05, 0.1, 0.2, 0.5]
    assert curve_radii(0.3, "Linf", 784) == [0.075, 0.15, 0.3, 0.6, 1.0]
    assert reach("L2", 784) == 14.0 and reach("L1", 784) == 392.0
    assert curve_radii(2.0, "L2", 784) == [0.5, 1.0, 2.0, 4.0, 14.0]
    assert curve_radii(10.0, "L1", 784)[-1] == 392.0


def test_ladder_per_norm_and_fab_where_asked(digits_model: Any) -> None:
    model, x, _ = digits_model
    stages = split(model, x[:1])
    names = {norm: [r.name for r in build_rungs(model, stages, 1.0, BUDGETS["standard"], 0,
                                                [], False, norm)]
             for norm in ("L2", "L1")}
    assert names["L2"] == ["pgd-ce", "apgd-ce", "apgd-dlr", "apgd-t", "apgd-t-rest", "square",
                           "apgd-dlr-more"]
    assert "square" not in names["L1"]  # no L1 variant
    thorough = build_rungs(model, stages, 1.0, BUDGETS["thorough"], 0, [], False, "L2")
    assert [r.name for r in thorough].index("fab-t") < [r.name for r in thorough].index("square")
    assert all(r.attack.norm == "L2" for r in thorough)
    asked = build_rungs(model, stages, 0.1, BUDGETS["quick"], 0, [], False, "Linf", fab=True)
    fab = next(r for r in asked if r.name == "fab-t")
    assert fab.attack.n_target_classes == 3 and fab.screened


@pytest.mark.parametrize(("norm", "eps"), [("L2", 0.75), ("L1", 2.0)])
def test_an_audit_in_the_norm(norm: str, eps: float, digits_model: Any,
                              one_thread: None) -> None:
    """Every rung and curve point is in the norm, every break within eps in it and in
    [0,1], the audited accuracy at most the baseline's, and the curve ends at 0."""
    model, x, y = digits_model
    result = audit(model, x, y, eps, budget="quick", norm=norm, fab=True)
    row = json.loads(json.dumps(result.to_dict()))
    assert row["norm"] == norm and any(norm in note for note in row["notes"])
    assert {r["params"]["norm"] for r in row["rungs"]} == {norm}
    assert "fab-t" in [r["name"] for r in row["rungs"]]
    assert result.robust_accuracy <= result.baseline_robust_accuracy
    broken = [p for p in row["ledger"] if p["broken_by"] is not None]
    assert broken and all(0 < p[norm.lower()] <= eps * (1 + 1e-5) for p in broken)
    assert [c["eps"] for c in row["curve"]] == curve_radii(eps, norm, 64)
    assert row["curve"][-1]["robust_accuracy"] == 0.0


def test_the_adversarials_an_audit_counts_are_within_eps_and_in_0_1(
        digits_model: Any, one_thread: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every x_adv of every rung and curve point of an L2 audit: within its eps in L2,
    and in [0,1]."""
    model, x, y = digits_model
    seen: list[tuple[torch.Tensor, torch.Tensor, float]] = []
    real = core.run_attack

    def spy(attack: Any, net: nn.Module, xb: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = real(attack, net, xb, *args, **kwargs)
        seen.append((xb, out[3], attack.eps))
        return out

    monkeypatch.setattr(core, "run_attack", spy)
    audit(model, x, y, 0.5, budget="quick", norm="L2")
    assert len(seen) > 5
    for clean, adv, eps in seen:
        assert (size(adv - clean, "L2") <= eps * (1 + 1e-5)).all()
        assert adv.min() >= 0 and adv.max() <= 1
