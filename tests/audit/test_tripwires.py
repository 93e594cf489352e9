"""Each probe and each sanity check of the audit, tripped on its own: a model (or, for
the checks the ladder cannot be steered into one at a time, the ladder's measurements)
built to show exactly one symptom makes exactly that probe fire or that check fail,
and an honest model fires none."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aerobust.audit import audit
from aerobust.audit.core import _checks, _threshold
from aerobust.audit.probes import run_probes, train_mode
from aerobust.audit.stages import split

pytestmark = pytest.mark.usefixtures("one_thread")
N, EPS = 16, 0.1


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


class Saturated(nn.Module):
    """Logits times 1e4: softmax exactly one-hot in float32."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _linear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * 1e4


class Noisy(nn.Module):
    """A little noise on the logits: two forwards of one input differ."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _linear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out + 1e-3 * torch.randn_like(out)


class Dropped(nn.Module):
    """Dropout, handed over in train mode."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _linear()
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.net(x))


class Detached(nn.Module):
    """The input goes through ``detach``: no gradient reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _linear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.detach() + 0 * x.sum().detach())


def _points() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(N, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pred = _linear()(x).argmax(1)
    return x, pred


def _fired(model: nn.Module, y: torch.Tensor | None = None) -> set[str]:
    x, pred = _points()
    given = train_mode(model)
    model.eval()
    probes = run_probes(model, split(model, x[:1]), x, pred if y is None else y, EPS)
    return {p.name for p in [*probes, given] if p.fired}


def test_an_honest_model_fires_no_probe() -> None:
    assert _fired(_linear()) == set()


def test_saturation_alone() -> None:
    """Labels the model gets wrong keep cross-entropy's gradient alive, so only the
    softmax's saturation shows."""
    model = Saturated()
    _, pred = _points()
    assert _fired(model, (pred + 1) % 3) == {"saturation"}


def test_randomness_alone() -> None:
    assert _fired(Noisy()) == {"randomness"}


def test_train_mode_alone() -> None:
    model = Dropped()
    assert model.training and _fired(model) == {"train-mode"}


def test_a_cut_gradient_fires_the_gradient_probes() -> None:
    assert _fired(Detached()) == {"gradient", "finite-differences"}


def test_train_mode_is_reported_by_the_audit_and_audited_in_eval_mode() -> None:
    x, y = _points()
    model = Dropped()
    result = audit(model, x, y, EPS, budget="quick")
    fired = {p.name for p in result.probes if p.fired}
    assert fired == {"train-mode"} and not result.random  # dropout is off in eval mode
    assert model.training  # handed back as given


def _ledger(broken_by: list[str | None]) -> list[dict]:
    return [{"clean_correct": True, "broken_by": b} for b in broken_by]


ROWS = [{"name": "pgd-ce", "kind": "baseline"}, {"name": "apgd-dlr", "kind": "white-box"},
        {"name": "square", "kind": "black-box"}, {"name": "pgd-more", "kind": "check"}]
FLAT = [{"eps": e, "robust_accuracy": r, "n": 100} for e, r in ((0.1, 0.5), (0.2, 0.2),
                                                                (0.8, 0.0))]


def _failed(curve: list[dict], broken_by: list[str | None]) -> set[str]:
    return {c.name for c in _checks(ROWS, _ledger(broken_by), curve, len(broken_by))
            if not c.passed}


def test_sane_measurements_pass_every_check() -> None:
    assert _failed(FLAT, ["pgd-ce"] * 50 + ["apgd-dlr"] * 50) == set()


def test_each_check_fails_alone() -> None:
    n = 100
    need = _threshold(n)
    sane = ["pgd-ce"] * n
    rising = [dict(FLAT[0]), {**FLAT[1], "robust_accuracy": 0.6}, FLAT[2]]
    assert _failed(rising, sane) == {"eps-monotone"}
    high = [*FLAT[:2], {**FLAT[2], "robust_accuracy": 0.2}]
    assert _failed(high, sane) == {"large-eps"}
    assert _failed(FLAT, ["square"] * need + sane[need:]) == {"black-box-not-stronger"}
    assert _failed(FLAT, ["square"] * (need - 1) + sane[need - 1:]) == set()
    assert _failed(FLAT, ["pgd-more"] * need + sane[need:]) == {"more-steps-converged"}


class Constant(nn.Module):
    """The same logits for every input: nothing any attack does changes a prediction."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([2.0, 0.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), 3) + 0 * x.flatten(1)[:, :1]


def test_a_model_no_attack_can_move_fails_large_eps_alone() -> None:
    x, _ = _points()
    y = torch.zeros(N, dtype=torch.long)
    result = audit(Constant(), x, y, EPS, budget="quick")
    assert {c.name for c in result.checks if not c.passed} == {"large-eps"}
    assert result.verdict == "masking"
