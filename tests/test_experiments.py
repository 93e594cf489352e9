from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aerobust.cli import main
from aerobust.errors import UserError
from aerobust.experiments import ExperimentConfig, Workspace, run_experiment
from aerobust.models import AEClassifier, load_model
from aerobust.report import write_experiment
from aerobust.training import RunStore
from tests.conftest import make_dataset


@pytest.fixture
def npz(tmp_path: Path) -> str:
    ds = make_dataset(n_train=96, n_test=24)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=ds.x_train.numpy(), y_train=ds.y_train.numpy(),
             x_test=ds.x_test.numpy(), y_test=ds.y_test.numpy())
    return f"npz:{path}"


def _config(npz: str, **kw) -> ExperimentConfig:
    settings = dict(classifier_epochs=3, ae_epochs=1, n_cw=8, cw_steps=10, cw_binary_steps=2,
                    pgd_steps=5, deepfool_steps=5)
    return ExperimentConfig(dataset=npz, **{**settings, **kw})


def test_table1_rows_markdown_and_cached_cells(tmp_path: Path, npz: str) -> None:
    ws = Workspace(_config(npz), RunStore(tmp_path / "store"), "cpu", progress=False)
    seen: list[dict] = []
    ws.on_cell = seen.append
    rows = run_experiment("table1", ws, tmp_path / "out")
    paths = write_experiment(tmp_path / "out", "table1")
    assert len(rows) == len(seen) == len(ws.cells("table1"))
    assert len(rows) == 2 * 7
    keys = {(r["variant"], r["attack"], r["eps"]) for r in rows}
    assert ("AE-C", "pgd", 80) in keys and ("C", "deepfool", None) in keys
    by = {(r["variant"], r["attack"], r["eps"]): r for r in rows}
    # the paper's MNIST numbers stand beside ours for grey data
    assert by[("C", "fgsm", 20)]["paper"] == 69.94
    for variant in ("C", "AE-C"):
        # a stronger attack, or a bigger eps, never leaves more accuracy
        assert by[(variant, "pgd", 20)]["accuracy"] <= by[(variant, "clean", 0)]["accuracy"]
        assert by[(variant, "fgsm", 80)]["accuracy"] <= by[(variant, "fgsm", 20)]["accuracy"]
        assert by[(variant, "cw", None)]["n"] == 8
    for r in rows:
        assert r["data_checksum"] == ws.dataset.checksum and r["key"] and r["seed"] == 0
        assert {"torch", "aerobust"} <= set(r["versions"])
        assert r["code"]["train:lenet5"].startswith("0.") and r["spec"]["coords"]["seed"] == 0
    md = Path(paths["md"]).read_text()
    assert "| PGD | 80 |" in md and "AE-C" in md
    saved = json.loads((tmp_path / "out" / "table1.json").read_text())
    assert saved["rows"] == rows
    # the resolved config, never None for "the default"
    assert saved["config"]["cw_binary_steps"] == 2 and saved["config"]["n_eval"] == 24
    assert saved["config"]["eps"] == [20.0, 80.0]
    assert [k for k, v in saved["config"].items() if v is None] == ["data_dir"]
    assert Path(paths["csv"]).read_text().count("\n") == len(rows) + 1
    # a second run reads the cells back instead of attacking again
    again = run_experiment("table1", ws, tmp_path / "out")
    assert [r["cell_seconds"] for r in again] == [r["cell_seconds"] for r in rows]


def test_changed_setting_does_not_reuse_cells(tmp_path: Path, npz: str) -> None:
    store = RunStore(tmp_path / "store")
    a = Workspace(_config(npz, eps=(10,)), store, "cpu", progress=False)
    b = Workspace(_config(npz, eps=(10,), pgd_steps=7), store, "cpu", progress=False)
    rows_a = run_experiment("table1", a, tmp_path / "out")
    rows_b = run_experiment("table1", b, tmp_path / "out")
    pgd_a = next(r for r in rows_a if r["attack"] == "pgd")
    pgd_b = next(r for r in rows_b if r["attack"] == "pgd")
    assert pgd_a["params"]["steps"] == 5 and pgd_b["params"]["steps"] == 7


def test_config_validation() -> None:
    with pytest.raises(UserError, match=r"outside 0\.\.255"):
        ExperimentConfig(eps=(300,))
    with pytest.raises(UserError, match="pgd_steps"):
        ExperimentConfig(pgd_steps=0)
    with pytest.raises(UserError, match="audit_budget must be one of quick, standard"):
        ExperimentConfig(audit_budget="fast")
    with pytest.raises(UserError, match="audit_n"):
        ExperimentConfig(audit_n=0)
    with pytest.raises(UserError, match="seeds"):
        ExperimentConfig(seeds=0)
    with pytest.raises(UserError, match="temperature must be > 0"):
        ExperimentConfig(temperature=0.0)


def test_attack_command_on_c_and_ae_c(tmp_path: Path, npz: str, capsys) -> None:
    store = str(tmp_path / "store")
    for what in ("classifier", "autoencoder"):
        assert main(["train", what, "--dataset", npz, "--epochs", "2", "--store", store,
                     "--quiet"]) == 0
    runs = sorted(Path(store).iterdir())
    ae, clf = (str(p) for p in runs)
    capsys.readouterr()
    base = ["attack", "--dataset", npz, "--classifier", clf, "--quiet", "--json"]
    assert main([*base, "--attack", "fgsm", "--eps", "51"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert c["params"]["eps"] == pytest.approx(0.2) and c["model"] == "C"
    assert main([*base, "--attack", "fgsm", "--eps", "51", "--ae", ae]) == 0
    ae_c = json.loads(capsys.readouterr().out)
    assert ae_c["model"] == "AE-C" and ae_c["params"]["eps"] == pytest.approx(0.2)
    # the accuracies, computed here: FGSM by hand on each model
    with np.load(npz.removeprefix("npz:")) as data:
        x, y = torch.from_numpy(data["x_test"]), torch.from_numpy(data["y_test"])
    c_model = load_model(Path(clf) / "model.pt")
    for result, model in ((c, c_model), (ae_c, AEClassifier(load_model(Path(ae) / "model.pt"),
                                                           c_model).eval())):
        x_var = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_var), y, reduction="sum"), x_var)
        x_adv = (x + 0.2 * grad.sign()).clamp(0, 1)
        with torch.no_grad():
            clean = model(x).argmax(1) == y
            robust = clean & (model(x_adv).argmax(1) == y)
        assert result["clean_accuracy"] == pytest.approx(float(clean.double().mean()))
        assert result["robust_accuracy"] == pytest.approx(float(robust.double().mean()))
    assert main([*base, "--attack", "pgd", "--eps", "20", "--steps", "3",
                 "--param", "restarts=2", "--n", "10"]) == 0
    pgd = json.loads(capsys.readouterr().out)
    assert pgd["n"] == 10 and pgd["params"]["restarts"] == 2 and pgd["params"]["steps"] == 3


@pytest.mark.parametrize("extra,message", [
    (["--attack", "jsma", "--eps", "8"], "unknown attack"),
    (["--attack", "fgsm", "--eps", "300"], "[0, 255]"),
    (["--attack", "fgsm"], "needs --eps"),
    (["--attack", "cw", "--eps", "8"], "minimum-norm"),
    (["--attack", "pgd", "--eps", "8", "--steps", "0"], "steps"),
    (["--attack", "pgd", "--eps", "8", "--param", "bogus=1"], "unknown parameter"),
    (["--attack", "pgd", "--eps", "8", "--param", "oops"], "NAME=VALUE"),
])
def test_attack_command_user_errors(tmp_path: Path, npz: str, capsys, extra, message) -> None:
    from aerobust.models import build_model, save_checkpoint

    save_checkpoint(tmp_path / "c.pt", build_model("lenet5", num_classes=3), "lenet5",
                    {"num_classes": 3})
    code = main(["attack", "--dataset", npz, "--classifier", str(tmp_path / "c.pt"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_experiment_command_writes_outputs(tmp_path: Path, npz: str, capsys) -> None:
    code = main(["experiment", "table1", "--dataset", npz, "--store", str(tmp_path / "s"),
                 "--out", str(tmp_path / "out"), "--classifier-epochs", "1", "--ae-epochs", "1",
                 "--eps", "10", "--n-cw", "4", "--cw-steps", "5", "--cw-binary-steps", "1",
                 "--pgd-steps", "2", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "Table 1" in out
    assert (tmp_path / "out" / "table1.md").is_file()
    assert (tmp_path / "out" / "table1.csv").is_file()
    assert main(["experiment", "table1", "--dataset", npz, "--eps", "1,x"]) == 2
