"""``aerobust audit``: a user's defense file, the outputs, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aerobust.cli import main
from aerobust.models import load_model
from tests.test_cli import _run


def test_audit_of_a_user_defense_writes_its_pages(trained, capsys) -> None:
    data, run, tmp = trained
    code, out, _ = _run(capsys, "audit", "--classifier", run, "--dataset", data,
                        "--defense", f"{tmp / 'defense.py'}:Round", "--eps", "51", "--n", "16",
                        "--budget", "quick", "--out", str(tmp / "out"), "--quiet", "--json")
    assert code == 0
    row = json.loads(out)
    # computed here: the defended model's clean accuracy, and a hand-written BPDA attack
    # (PGD through the rounding as if it were the identity) that the audit must match
    with np.load(data.removeprefix("npz:")) as npz:
        x, y = torch.from_numpy(npz["x_test"][:16]), torch.from_numpy(npz["y_test"][:16])
    clf = load_model(Path(run) / "model.pt")

    def defended(v: torch.Tensor) -> torch.Tensor:
        return clf(torch.round(v * 7) / 7)

    eps = 51 / 255
    x_adv = x.clone()
    for _ in range(10):
        x_var = x_adv.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(clf(x_var), y, reduction="sum"), x_var)
        x_adv = torch.min(torch.max(x_adv + eps / 4 * grad.sign(), x - eps), x + eps).clamp(0, 1)
    with torch.no_grad():
        clean = defended(x).argmax(1) == y
        by_hand = float((clean & (defended(x_adv).argmax(1) == y)).double().mean())
    assert row["clean_accuracy"] == pytest.approx(float(clean.double().mean()))
    assert row["robust_accuracy"] <= by_hand
    # PGD on CE sees no gradient through the rounding: it overstates robustness by far
    # more than the 5-point threshold, so the verdict can only be masking
    assert row["baseline_robust_accuracy"] - by_hand > 0.2
    assert row["verdict"] == "masking"
    assert any(p["name"] == "gradient" and p["fired"] for p in row["probes"])
    assert len(row["ledger"]) == row["n"]
    saved = json.loads((tmp / "out" / "audit.json").read_text())
    assert saved["verdict"] == row["verdict"]
    assert "Attack ladder" in (tmp / "out" / "audit.md").read_text()
    assert (tmp / "out" / "report_files" / "audit.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp / "out" / "audit.html").read_text().startswith("<!DOCTYPE html>")


def test_audit_in_l2_takes_eps_in_the_0_1_scale(trained, capsys) -> None:
    data, run, _ = trained
    code, out, _ = _run(capsys, "audit", "--classifier", run, "--dataset", data, "--eps",
                        "1.5", "--norm", "L2", "--fab", "--budget", "quick", "--n", "12",
                        "--quiet", "--json")
    assert code == 0
    row = json.loads(out)
    assert row["norm"] == "L2" and row["eps"] == 1.5
    assert "fab-t" in [r["name"] for r in row["rungs"]]
    assert all(p["l2"] <= 1.5 * (1 + 1e-5) for p in row["ledger"] if p["l2"] is not None)


def test_help_says_the_unit_of_eps_per_norm(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Linf: 0-255 pixel units" in text
    assert "L2 and L1: the [0,1] pixel scale that AutoAttack and RobustBench use" in text


@pytest.mark.parametrize(("extra", "message"), [
    (["--eps", "-1", "--norm", "L2"], "an L2 eps must be a non-negative number"),
    (["--eps", "1", "--norm", "L3"], "invalid choice"),
    (["--eps", "300"], "must be in [0, 255] pixel units"),
    (["--eps", "-1"], "must be in [0, 255] pixel units"),
    (["--eps", "25.5", "--defense", "{tmp}/defense.py:Missing"], "no nn.Module"),
    (["--eps", "25.5", "--defense", "{tmp}/nothere.py:Round"], "existing file"),
    (["--eps", "25.5", "--defense", "{tmp}/defense.py:Shrink"], "keep the input's shape"),
    (["--eps", "25.5", "--budget", "huge"], "invalid choice"),
])
def test_user_errors_exit_2(trained, capsys, extra: list[str], message: str) -> None:
    data, run, tmp = trained
    argv = ["audit", "--classifier", run, "--dataset", data, "--quiet",
            *(a.replace("{tmp}", str(tmp)) for a in extra)]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
