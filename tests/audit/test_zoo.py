"""A zoo of deliberately broken defenses: the audit must call each of them masking and
find about what an adaptive attack written here finds; honest models must pass."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from aerobust import attacks, bpda
from aerobust.audit import audit
from tests.conftest import fit_by_gradient_descent

EPS = 0.1
N = 200


class Round(nn.Module):
    """Rounding to 8 grey levels: zero gradient almost everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 7) / 7


class Scale(nn.Module):
    """Logits times 1e4: softmax saturates and cross-entropy's gradient underflows."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * 1e4


class Noise(nn.Module):
    """Gaussian input noise: a random model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 0.5 * torch.randn_like(x)).clamp(0, 1)


class NoGrad(nn.Module):
    """A preprocessing run under no_grad: the classic way to cut the graph by mistake."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.module(x)


@dataclass
class Zoo:
    x: torch.Tensor
    y: torch.Tensor
    clf: nn.Module
    ae: nn.Module
    adv: nn.Module


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def _ae(x: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    ae = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 64),
                       nn.Sigmoid(), nn.Unflatten(1, (1, 8, 8)))
    params = list(ae.parameters())
    for _ in range(300):
        loss = nn.functional.mse_loss(ae(x), x)
        with torch.no_grad():
            for p, g in zip(params, torch.autograd.grad(loss, params), strict=True):
                p -= 2.0 * g
    return ae.eval().requires_grad_(False)


def _adversarially_trained(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """Madry training, full batch: each step on PGD-5 examples at EPS against itself."""
    model = _mlp(1)
    params = list(model.parameters())
    attack = attacks.PGD(eps=EPS, steps=5, keep="last")
    for step in range(300):
        x_adv = attack(model, x, y).x_adv if step >= 50 else x
        loss = nn.functional.cross_entropy(model(x_adv), y)
        with torch.no_grad():
            for p, g in zip(params, torch.autograd.grad(loss, params), strict=True):
                p -= 0.5 * g
    return model.eval().requires_grad_(False)


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Tiny models: one thread (``one_thread`` in the top conftest)."""


@pytest.fixture(scope="module")
def zoo() -> Zoo:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build()
    finally:
        torch.set_num_threads(threads)


def _build() -> Zoo:
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(data.target, dtype=torch.long)
    train, test = slice(0, 1400), slice(1400, 1400 + N)
    clf = fit_by_gradient_descent(_mlp(0), x[train], y[train], steps=300)
    return Zoo(x[test], y[test], clf.eval().requires_grad_(False), _ae(x[train]),
               _adversarially_trained(x[train], y[train]))


def _robust(model: nn.Module, adapted: list[tuple[nn.Module, attacks.Attack]],
            zoo: Zoo) -> float:
    """Robust accuracy of ``model`` under the per-point minimum of an adaptive attack's
    variants, each run on its adapted model and judged on ``model``: a break counts when
    a majority of 8 forwards and then of 16 fresh ones misclassify (for a deterministic
    model, one forward decides)."""
    torch.manual_seed(0)

    @torch.no_grad()
    def fooled(x: torch.Tensor, draws: int) -> torch.Tensor:
        return 2 * sum((model(x).argmax(1) != zoo.y).int() for _ in range(draws)) > draws

    robust = ~fooled(zoo.x, 8)
    for adapted_model, attack in adapted:
        x_adv = attack(adapted_model, zoo.x, zoo.y).x_adv
        robust &= ~(fooled(x_adv, 8) & fooled(x_adv, 16))
    return robust.double().mean().item()


def _apgd(**kw: object) -> list[attacks.Attack]:
    return [attacks.APGD(eps=EPS, steps=50, loss=loss, **kw) for loss in ("ce", "dlr")]


def _broken(name: str, zoo: Zoo) -> tuple[nn.Module, float]:
    """A broken defense and the robust accuracy an adaptive attack gives it: APGD on CE
    and DLR through BPDA, on the margin loss, or with EOT, plus (where the defense sits in
    front of the classifier) a transfer from the classifier alone."""
    transfer = [(zoo.clf, attacks.PGD(eps=EPS, steps=50, keep="last"))]
    if name in ("round", "ae-round", "no-grad-ae"):
        front = {"round": [Round()], "ae-round": [zoo.ae, Round()],
                 "no-grad-ae": [NoGrad(zoo.ae)]}[name]
        model = nn.Sequential(*front, zoo.clf)
        # BPDA: identity backward through rounding; the AE's own gradient behind no_grad
        adapted = nn.Sequential(*[m if isinstance(m, nn.Sequential)
                                  else bpda(m, approx=zoo.ae) if isinstance(m, NoGrad)
                                  else bpda(m) for m in front], zoo.clf)
        return model, _robust(model, [(adapted, a) for a in _apgd()] + transfer, zoo)
    if name == "scaled":
        model = Scale(zoo.clf)
        return model, _robust(model, [(model, a) for a in _apgd()[1:]] + [
            (model, attacks.APGD(eps=EPS, steps=50, loss="margin"))], zoo)
    model = nn.Sequential(Noise(), zoo.clf)
    return model, _robust(model, [(model, a) for a in _apgd(eot=8)] + transfer, zoo)


@pytest.mark.parametrize("name", ["round", "ae-round", "scaled", "noise", "no-grad-ae"])
def test_broken_defenses_are_masking(name: str, zoo: Zoo) -> None:
    model, adaptive = _broken(name, zoo)
    result = audit(model, zoo.x, zoo.y, EPS, budget="quick")
    assert result.verdict == "masking", result.reasons
    assert result.baseline_robust_accuracy - result.robust_accuracy >= 0.1
    # Within 3 points above the adaptive attack; below it means the ladder found more
    # (every break it counts is an adversarial verified on the model itself: one forward,
    # or two independent majorities of draws for the random one), never a false break.
    assert result.robust_accuracy <= adaptive + 0.03, (result.robust_accuracy, adaptive)
    for point in result.ledger:
        if point["broken_by"] is not None:
            assert point["margin"] is not None and point["linf"] <= EPS + 1e-6


@pytest.mark.parametrize("name", ["plain", "adversarially-trained"])
def test_honest_models_pass(name: str, zoo: Zoo) -> None:
    model = zoo.clf if name == "plain" else zoo.adv
    result = audit(model, zoo.x, zoo.y, EPS, budget="quick")
    assert result.verdict == "no-masking-detected", result.reasons
    assert all(check.passed for check in result.checks)
    assert result.robust_accuracy <= result.baseline_robust_accuracy
