"""``aerobust attack`` with each attack family and ``aerobust audit --ae``: the numbers
the commands print are those the library computes on the same points, and the clean
accuracies those of the models themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aerobust import attacks
from aerobust.cli import main
from aerobust.models import AEClassifier, build_model, load_model, save_checkpoint
from tests.conftest import fit_by_gradient_descent, make_dataset

pytestmark = pytest.mark.usefixtures("one_thread")
N = 8


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 3-class npz, a classifier fitted on it and an autoencoder (untrained: any
    shape-keeping front does for the plumbing)."""
    tmp = tmp_path_factory.mktemp("cli")
    ds = make_dataset(n_train=48, n_test=12)
    np.savez(tmp / "d.npz", x_train=ds.x_train.numpy(), y_train=ds.y_train.numpy(),
             x_test=ds.x_test.numpy(), y_test=ds.y_test.numpy())
    torch.manual_seed(0)
    clf = fit_by_gradient_descent(build_model("lenet5", num_classes=3), ds.x_train,
                                  ds.y_train, steps=30, lr=0.5)
    save_checkpoint(tmp / "clf.pt", clf, "lenet5", {"num_classes": 3})
    save_checkpoint(tmp / "ae.pt", build_model("conv-ae"), "conv-ae", {})
    return {"npz": tmp / "d.npz", "clf": tmp / "clf.pt", "ae": tmp / "ae.pt"}


def _test_points(files: dict[str, Path], n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(files["npz"]) as npz:
        return torch.from_numpy(npz["x_test"][:n]), torch.from_numpy(npz["y_test"][:n])


def _json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name,options,params", [
    ("cw", ["--steps", "10", "--param", "binary_steps=2"], {"steps": 10, "binary_steps": 2}),
    ("deepfool", ["--steps", "10"], {"steps": 10}),
    ("apgd", ["--eps", "51", "--steps", "5"], {"eps": 0.2, "steps": 5}),
    ("square", ["--eps", "51", "--param", "queries=30"], {"eps": 0.2, "queries": 30}),
])
def test_attack_command_gives_the_library_numbers(files, capsys, name: str,
                                                  options: list[str], params: dict) -> None:
    got = _json(capsys, ["attack", "--dataset", f"npz:{files['npz']}", "--classifier",
                         str(files["clf"]), "--attack", name, *options, "--n", str(N),
                         "--device", "cpu", "--quiet", "--json"])
    model = load_model(files["clf"])
    x, y = _test_points(files)
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    want = attacks.evaluate(model, x, y, attacks.get(name, **params))
    assert got["attack"] == name and got["n"] == N
    assert got["clean_accuracy"] == pytest.approx(clean) and clean > 0.5
    assert got["robust_accuracy"] == pytest.approx(want.robust_accuracy)
    assert got["median_l2"] == pytest.approx(want.median_l2)
    assert got["robust_accuracy"] <= got["clean_accuracy"]


def test_audit_with_an_autoencoder_in_front(files, capsys) -> None:
    got = _json(capsys, ["audit", "--dataset", f"npz:{files['npz']}", "--classifier",
                         str(files["clf"]), "--ae", str(files["ae"]), "--eps", "51",
                         "--n", str(N), "--budget", "quick", "--device", "cpu", "--quiet",
                         "--json"])
    x, y = _test_points(files)
    model = AEClassifier(load_model(files["ae"]), load_model(files["clf"])).eval()
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    assert got["ae"] == str(files["ae"]) and got["n"] == N
    assert got["clean_accuracy"] == pytest.approx(clean)
    assert got["robust_accuracy"] <= got["baseline_robust_accuracy"] <= got["clean_accuracy"]
    assert got["stages"]  # the autoencoder is a stage the probes look at


def test_ae_and_defense_together_are_refused(files, capsys, tmp_path: Path) -> None:
    (tmp_path / "front.py").write_text("from torch import nn\nFront = nn.Identity\n")
    code = main(["audit", "--dataset", f"npz:{files['npz']}", "--classifier",
                 str(files["clf"]), "--ae", str(files["ae"]), "--defense",
                 f"{tmp_path / 'front.py'}:Front", "--eps", "8", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err == "aerobust: error: give --ae or --defense, not both\n"
