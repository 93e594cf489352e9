"""The audit's contract: validation, the ledger, statistics and JSON output."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from aerobust.attacks import Execution, runner
from aerobust.audit import audit
from aerobust.audit.stats import mcnemar, proportion_interval, smallest_significant_count
from aerobust.errors import UserError
from tests.audit.test_zoo import NoGrad


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(20, 1, 4, 4, generator=g), torch.randint(0, 3, (20,), generator=g)


@pytest.mark.parametrize(("eps", "message"), [(1.5, "eps must be in"), (-0.1, "eps must be"),
                                              (8, "8/255")])
def test_eps_out_of_range(eps: float, message: str) -> None:
    x, y = _data()
    with pytest.raises(UserError, match=message):
        audit(_model(), x, y, eps)


def test_wrong_output_shape_and_budget() -> None:
    x, y = _data()
    with pytest.raises(UserError, match="logits of shape"):
        audit(nn.Identity(), x, y, 0.1)
    with pytest.raises(UserError, match="budget must be"):
        audit(_model(), x, y, 0.1, budget="huge")


def test_ledger_and_json(one_thread: None) -> None:
    x, y = _data()
    result = audit(_model(), x, y, 0.1, budget="quick")
    assert result.verdict == "inconclusive"  # 20 points cannot show a 5-point gap
    row = json.loads(json.dumps(result.to_dict()))
    assert len(row["ledger"]) == 20
    robust = sum(p["clean_correct"] and p["broken_by"] is None for p in row["ledger"])
    assert result.robust_accuracy == pytest.approx(robust / 20)
    lo, hi = result.robust_interval
    assert lo <= result.robust_accuracy <= hi
    for point in row["ledger"]:
        if point["broken_by"] is not None:
            assert point["margin"] >= 0 and point["linf"] <= 0.1 + 1e-6
    # what ran, resolved: the default on a CPU, one block for these 20 points
    assert row["execution"] == {"block_size": 20, "channels_last": True, "device": "cpu"}
    assert all("block_size" not in rung["params"] for rung in row["rungs"])


def test_the_execution_reaches_every_attack_and_is_recorded(
    one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = _data()
    seen: list[Execution | None] = []
    real = runner.run

    def spy(attack: Any, model: nn.Module, xb: torch.Tensor, yb: torch.Tensor,
            execution: Execution | None = None) -> Any:
        seen.append(execution)
        return real(attack, model, xb, yb, execution)

    monkeypatch.setattr(runner, "run", spy)
    result = audit(_model(), x, y, 0.1, budget="quick", batch_size=8,
                   execution=Execution(channels_last=False))
    assert result.execution == {"block_size": 8, "channels_last": False, "device": "cpu"}
    assert len(seen) > len(result.rungs)
    assert set(seen) == {Execution(block_size=8, channels_last=False)}


def test_statistics() -> None:
    assert smallest_significant_count() == 6  # 2 * 0.5**6 < 0.05 <= 2 * 0.5**5
    assert mcnemar(0, 0) == 1.0 and mcnemar(6, 0) < 0.05 <= mcnemar(5, 0)
    lo, hi = proportion_interval(50, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.2, abs=0.01)


def test_screened_rungs_run_on_a_sample_and_escalate_on_a_break(one_thread: None) -> None:
    # A linear model (APGD finds its exact worst case, so Square can break nothing
    # after it) with about half the points within reach of eps 0.05.
    x = torch.rand(300, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.25
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].weight[1].fill_(0.3)
        net[1].bias.copy_(torch.tensor([2.0, -0.7, -5.0]))
        y = net(x).argmax(dim=1)
    screen = 50  # the quick budget's sample

    plain = audit(net, x, y, 0.05, budget="quick")
    square = next(r for r in plain.rungs if r["name"] == "square")
    assert square["screened"] == {"sample": screen, "broken": 0, "escalated": False}
    assert square["attacked"] == screen and square["broken"] == 0

    # The same model with its graph cut: gradient rungs see zeros, Square does not.
    cut = audit(NoGrad(net), x, y, 0.05, budget="quick")
    at = next(i for i, r in enumerate(cut.rungs) if r["name"] == "square")
    square = cut.rungs[at]
    assert square["screened"]["escalated"] and square["screened"]["broken"] > 0
    robust_before = len(x) - sum(r["broken"] for r in cut.rungs[:at])
    assert square["attacked"] == robust_before > screen
    assert square["broken"] == sum(p["broken_by"] == "square" for p in cut.ledger) > \
        square["screened"]["broken"]


def test_aerobust_audit_is_the_call_a_newcomer_types(one_thread: None) -> None:
    """``aerobust.audit(model, x, y, eps=...)`` runs the audit, and every name that was
    importable from the package still is."""
    import inspect

    import aerobust
    import aerobust.audit.core
    from aerobust.audit import BUDGETS, VERDICTS, Audit, Budget, Check, Probe, core

    x, y = _data()
    called = aerobust.audit(_model(), x, y, eps=0.1, budget="quick")
    assert isinstance(called, Audit)
    assert called.to_dict()["ledger"] == audit(_model(), x, y, 0.1, budget="quick").to_dict()[
        "ledger"]
    assert aerobust.audit.audit is core.audit is aerobust.audit.core.audit
    assert "eps" in inspect.signature(aerobust.audit).parameters
    assert set(BUDGETS) == {"quick", "standard", "thorough"} and "masking" in VERDICTS
    assert all(isinstance(t, type) for t in (Budget, Check, Probe))
    with pytest.raises(TypeError):
        aerobust.audit(_model(), x)  # a wrong call still says what is missing
