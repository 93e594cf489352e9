"""The robust-feature experiments (Table 3, Fig. 4) end to end on tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aerobust.cli import main
from aerobust.experiments import ExperimentConfig, Workspace, run_experiment
from aerobust.report import write_experiment
from aerobust.training import RunStore

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = dict(classifier_epochs=1, ae_epochs=1, pgd_steps=2, latent_eps=(20, 50),
                eps_sweep=(0, 40), lambdas=(0.0, 1.0), gammas=(0, 2))


def _ws(tiny_npz: str, shared_store: RunStore, **kw) -> Workspace:
    return Workspace(ExperimentConfig(dataset=tiny_npz, **{**SETTINGS, **kw}), shared_store,
                     "cpu", progress=False)


def test_table3_end_to_end(tmp_path: Path, tiny_npz: str, shared_store: RunStore) -> None:
    ws = _ws(tiny_npz, shared_store)
    seen: list[dict] = []
    ws.on_cell = seen.append
    rows = run_experiment("table3", ws, tmp_path)
    paths = write_experiment(tmp_path, "table3")
    assert len(rows) == len(seen) == len(ws.cells("table3"))
    # 2 lambdas + 2 gammas, x FGSM/PGD x 2 epsilons
    assert len(rows) == 4 * 2 * 2
    settings = {(r["method"], r["setting"]) for r in rows}
    assert settings == {("regularization", "lambda=0"), ("regularization", "lambda=1"),
                        ("alternating", "gamma=0"), ("alternating", "gamma=2")}
    by = {(r["setting"], r["attack"], r["eps"]): r for r in rows}
    run = {s: by[(s, "pgd", 20)]["classifier_run"] for s in ("lambda=0", "lambda=1", "gamma=0",
                                                              "gamma=2")}
    # lambda = 0 and gamma = 0 are the same plain-CE network: one shared run
    assert run["lambda=0"] == run["gamma=0"] and run["lambda=1"] != run["gamma=2"]
    assert by[("lambda=1", "fgsm", 20)]["paper"] == 69.07
    spec = json.loads((shared_store.root / run["gamma=2"] / "spec.json").read_text())
    assert (spec["method"], spec["gamma"]) == ("alternating", 2)
    for r in rows:
        assert 0 <= r["accuracy"] <= r["clean_accuracy"] <= 100
    md = Path(paths["md"]).read_text()
    assert "Regularization method" in md and "Alternating method" in md
    assert "| PGD | 50 |" in md
    again = run_experiment("table3", ws, tmp_path)
    assert again == rows


def test_figure4_end_to_end(tmp_path: Path, tiny_npz: str, shared_store: RunStore) -> None:
    ws = _ws(tiny_npz, shared_store)
    seen: list[dict] = []
    ws.on_cell = seen.append
    rows = run_experiment("figure4", ws, tmp_path)
    paths = write_experiment(tmp_path, "figure4")
    assert len(rows) == len(seen) == len(ws.cells("figure4"))
    assert len(rows) == 4 * 2
    assert {r["variant"] for r in rows} == {"C", "AE-C", "advC", "AE-advC"}
    by = {(r["variant"], r["eps"]): r for r in rows}
    assert by[("C", 40)]["classifier_run"] == by[("AE-C", 40)]["classifier_run"]
    assert by[("advC", 40)]["classifier_run"] != by[("C", 40)]["classifier_run"]
    assert by[("advC", 40)]["adversarial_training"]["eps"] == pytest.approx(0.3)
    for variant in ("C", "AE-C", "advC", "AE-advC"):
        # eps 0 is clean accuracy; attacked accuracy cannot exceed it
        assert by[(variant, 40)]["accuracy"] <= by[(variant, 0)]["accuracy"]
    assert paths["figure4"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](report_files/figure4.png)" in Path(paths["md"]).read_text()


def test_cli_runs_table3_with_option_lists(tmp_path: Path, tiny_npz: str, capsys) -> None:
    args = ["experiment", "table3", "--dataset", tiny_npz, "--out", str(tmp_path / "o"),
            "--store", str(tmp_path / "s"), "--classifier-epochs", "1", "--pgd-steps", "1",
            "--lambdas", "0", "--gammas", "1", "--latent-eps", "20", "--quiet", "--json"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {r["setting"] for r in rows} == {"lambda=0", "gamma=1"}
    assert main([*args[:-2], "--gammas", "1.5", "--quiet"]) == 2
    assert "gammas must be a whole number, got 1.5" in capsys.readouterr().err
