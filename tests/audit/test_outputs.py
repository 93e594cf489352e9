"""Outputs that hide the logits: probabilities, log-probabilities and saturated scores
are named as evidence, and the audit breaks such a model as far as the same model
returning logits."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from aerobust.audit import audit
from tests.audit.test_zoo import _mlp
from tests.conftest import fit_by_gradient_descent

pytestmark = pytest.mark.usefixtures("one_thread")
EPS, N, T = 0.1, 80, 50  # T: a temperature that makes float32 softmax underflow often


class Outputs(nn.Module):
    """The classifier's logits times ``T``, then ``how``, as a model's own code does."""

    def __init__(self, model: nn.Module, how: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.model, self.how = model, how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.how(self.model(x) * T)


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(data.target, dtype=torch.long)
    torch.set_num_threads(1)
    clf = fit_by_gradient_descent(_mlp(0), x[:1400], y[:1400], steps=300)
    return clf.eval().requires_grad_(False), x[1400 : 1400 + N], y[1400 : 1400 + N]


@pytest.fixture(scope="module")
def as_logits(digits) -> object:
    """The audit of the same model returning its logits (times ``T``)."""
    clf, x, y = digits
    return audit(Outputs(clf, lambda z: z), x, y, EPS, budget="quick")


def _outputs_probe(result) -> object:
    return next(p for p in result.probes if p.name == "outputs")


@pytest.mark.parametrize(("name", "kind"), [
    ("softmax", "probabilities"), ("softmax-module", "probabilities"),
    ("log-softmax", "log-probabilities"), ("log-softmax-module", "log-probabilities"),
    ("scaled", "logits, softmax saturated")])
def test_outputs_that_hide_the_logits_are_attacked_as_logits(name: str, kind: str,
                                                              digits, as_logits) -> None:
    clf, x, y = digits
    logits = as_logits
    model = {"softmax": Outputs(clf, lambda z: z.softmax(dim=1)),
             "softmax-module": nn.Sequential(Outputs(clf, lambda z: z), nn.Softmax(dim=1)),
             "log-softmax": Outputs(clf, lambda z: z.log_softmax(dim=1)),
             "log-softmax-module": nn.Sequential(Outputs(clf, lambda z: z),
                                                 nn.LogSoftmax(dim=1)),
             "scaled": Outputs(clf, lambda z: z * 1e3)}[name]
    result = audit(model, x, y, EPS, budget="quick")
    probe = _outputs_probe(result)
    assert probe.fired and f"returns {kind}" in probe.detail
    assert result.clean_accuracy == logits.clean_accuracy
    # as low as the model returning logits (on 80 points, one point of attack noise)
    assert result.robust_accuracy <= logits.robust_accuracy + 1 / N, (
        result.robust_accuracy, logits.robust_accuracy, probe.detail)
    # the paper's attack still sees the model as given: the gap is the evidence
    assert result.baseline_robust_accuracy >= logits.robust_accuracy


def test_plain_logits_are_left_alone(digits) -> None:
    clf, x, y = digits
    probe = _outputs_probe(audit(clf, x, y, EPS, budget="quick"))
    assert not probe.fired and "returns logits" in probe.detail
