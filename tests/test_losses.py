"""Training losses of the gradient-masking defenses: softmax temperature (in training
only) and Guided Complement Entropy (hand-computed, minimised by confident correct
predictions, finite where p_y rounds to 1)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from aerobust.cli import main
from aerobust.errors import UserError
from aerobust.models import LeNet5, load_model
from aerobust.training import RunStore, default_spec, make_loss
from aerobust.training.losses import loss_kwargs
from tests.conftest import make_dataset

LOGITS = torch.tensor([[2.0, 0.5, -1.0, 0.3], [-0.2, 0.1, 1.5, 0.0], [0.0, 0.0, 0.0, 0.0]],
                      dtype=torch.float64)
LABELS = torch.tensor([0, 3, 1])


def test_temperature_divides_the_logits_in_the_loss() -> None:
    loss = make_loss("temperature", temperature=2.5)(LOGITS, LABELS)
    by_hand = -(LOGITS / 2.5).log_softmax(1)[torch.arange(3), LABELS].mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-12)
    assert loss.item() != pytest.approx(F.cross_entropy(LOGITS, LABELS).item())
    with pytest.raises(UserError, match="temperature"):
        make_loss("temperature", temperature=0)


def test_temperature_model_is_deployed_with_raw_logits(tmp_path: Path) -> None:
    """The stored model is the plain architecture: its forward is the network's raw
    logits (T=1), and the recorded test loss is CE of those raw logits."""
    ds = make_dataset(n_train=48, n_test=24)
    spec = default_spec("lenet5", ds, epochs=1, loss="temperature",
                        loss_kwargs=loss_kwargs("temperature", temperature=4.0))
    run = RunStore(tmp_path).train(spec, ds, "cpu", progress=False)
    model = load_model(run.checkpoint)
    assert type(model) is LeNet5
    plain = LeNet5(num_classes=3)
    plain.load_state_dict(model.state_dict())
    plain.eval()
    with torch.no_grad():
        logits = model(ds.x_test)
        assert torch.equal(logits, plain(ds.x_test))
        raw_ce = F.cross_entropy(logits, ds.y_test).item()
    assert run.metrics["test_loss"] == pytest.approx(raw_ce, rel=1e-5)
    assert run.metrics["test_loss"] != pytest.approx(
        F.cross_entropy(logits / 4.0, ds.y_test).item(), rel=1e-3)


def _gce_by_hand(logits: torch.Tensor, y: torch.Tensor, alpha: float, norm: float) -> float:
    """The formula as written: p_y^alpha * sum_{j!=y} P_j log P_j, P_j = p_j / (1 - p_y)."""
    total = 0.0
    p = logits.softmax(1).tolist()
    for row, label in zip(p, y.tolist(), strict=True):
        py = row[label]
        comp = [pj / (1 - py) for j, pj in enumerate(row) if j != label]
        total += py ** alpha * sum(q * math.log(q) for q in comp)
    return total / len(p) / norm


@pytest.mark.parametrize(("normalizer", "norm"), [("k-1", math.log(3)), ("k", math.log(4))])
def test_gce_matches_a_hand_computation(normalizer: str, norm: float) -> None:
    loss = make_loss("gce", alpha=1 / 3, normalizer=normalizer)(LOGITS, LABELS)
    assert loss.item() == pytest.approx(_gce_by_hand(LOGITS, LABELS, 1 / 3, norm), rel=1e-10)
    assert loss.item() < 0  # minus an entropy: the sign the authors' code minimises


def test_gce_is_lowest_for_a_confident_correct_prediction() -> None:
    gce = make_loss("gce")
    y = torch.tensor([0])

    def at(logits: list[float]) -> float:
        return gce(torch.tensor([logits], dtype=torch.float64), y).item()

    best = at([12.0, 0.0, 0.0, 0.0])  # near one-hot on the truth, uniform complement
    assert best == pytest.approx(-1.0, abs=1e-4)  # the minimum with log(K-1)
    for other in ([0.0, 0.0, 0.0, 0.0],  # uniform
                  [12.0, 3.0, 0.0, 0.0],  # confident, peaked complement
                  [0.0, 12.0, 0.0, 0.0],  # confident and wrong
                  [2.0, 0.0, 0.0, 0.0]):  # correct but unsure
        assert best < at(other)
    # gradient descent on the logits raises p_y and flattens the complement
    z = torch.tensor([[1.0, 0.8, -0.5, 0.2]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(gce(z, y), z)
    assert g[0, 0] < 0  # increasing the true logit lowers the loss
    assert g[0, 1] > 0 > g[0, 2]  # the largest wrong logit goes down, the smallest up


def test_gce_is_finite_where_p_y_rounds_to_one() -> None:
    z = torch.tensor([[200.0, 0.0, -3.0, 5.0], [0.0, 0.0, 0.0, 1e4]], requires_grad=True)
    y = torch.tensor([0, 3])
    assert z.softmax(1)[0, 0] == 1.0  # 1 - p_y is exactly 0 in float32
    loss = make_loss("gce")(z, y)
    (g,) = torch.autograd.grad(loss, z)
    assert torch.isfinite(loss) and torch.isfinite(g).all()


def test_loss_kwargs_fill_defaults_and_reject_strays() -> None:
    assert loss_kwargs("gce") == {"alpha": 1 / 3, "normalizer": "k-1"}
    assert loss_kwargs("temperature", temperature=None) == {"temperature": 2.5}
    assert loss_kwargs("ce", temperature=None, alpha=None) == {}
    with pytest.raises(UserError, match="takes no temperature"):
        loss_kwargs("ce", temperature=3.0)
    with pytest.raises(UserError, match="normalizer"):
        loss_kwargs("gce", normalizer="log2")


def test_train_command_selects_the_loss(tmp_path: Path, capsys) -> None:
    import json

    import numpy as np

    ds = make_dataset(n_train=48, n_test=12)
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=ds.x_train.numpy(), y_train=ds.y_train.numpy(),
             x_test=ds.x_test.numpy(), y_test=ds.y_test.numpy())
    base = ["train", "classifier", "--dataset", f"npz:{npz}", "--epochs", "1", "--store",
            str(tmp_path / "s"), "--quiet", "--json"]
    assert main([*base, "--loss", "gce", "--gce-alpha", "0.5"]) == 0
    run = Path(json.loads(capsys.readouterr().out)["run"])
    spec = json.loads((run / "spec.json").read_text())
    assert spec["loss"] == "gce" and spec["loss_kwargs"] == {"alpha": 0.5, "normalizer": "k-1"}
    assert main([*base, "--loss", "ce", "--temperature", "3"]) == 2
    assert "takes no temperature" in capsys.readouterr().err
