from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aerobust.cli import main
from aerobust.models import build_model, load_model, save_checkpoint
from tests.conftest import make_dataset


def _npz(path: Path, channels: int = 1, size: int = 28) -> Path:
    ds = make_dataset(channels=channels, size=size)
    np.savez(path, x_train=ds.x_train.numpy(), y_train=ds.y_train.numpy(),
             x_test=ds.x_test.numpy(), y_test=ds.y_test.numpy())
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_then_eval_c_and_ae_c(tmp_path: Path, capsys) -> None:
    data = f"npz:{_npz(tmp_path / 'd.npz')}"
    store = str(tmp_path / "store")
    code, out, _ = _run(capsys, "train", "classifier", "--dataset", data, "--epochs", "4",
                        "--batch-size", "16", "--store", store, "--quiet", "--json")
    assert code == 0
    clf = json.loads(out)
    assert clf["test_accuracy"] > 0.9 and Path(clf["checkpoint"]).is_file()
    code, out, _ = _run(capsys, "train", "autoencoder", "--dataset", data, "--epochs", "2",
                        "--store", store, "--quiet")
    assert code == 0 and "test MSE" in out
    ae_run = out.splitlines()[0].removeprefix("run: ")
    code, out, _ = _run(capsys, "eval", "--dataset", data, "--classifier", clf["run"],
                        "--ae", ae_run, "--json", "--device", "cpu")
    assert code == 0
    res = json.loads(out)
    assert res["accuracy_C"] == pytest.approx(clf["test_accuracy"])
    # AE-C's accuracy, computed here from the two checkpoints and the npz
    with np.load(tmp_path / "d.npz") as npz:
        x, y = torch.from_numpy(npz["x_test"]), torch.from_numpy(npz["y_test"])
    ae, c = load_model(Path(ae_run) / "model.pt"), load_model(clf["checkpoint"])
    with torch.no_grad():
        expected = float((c(ae(x)).argmax(1) == y).double().mean())
    assert res["accuracy_AE_C"] == pytest.approx(expected)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "classifier", "--dataset", "imagenet"], "unknown dataset"),
        (["train", "classifier", "--arch", "alexnet"], "invalid choice"),
        (["train", "classifier", "--epochs", "0", "--store", "{tmp}"], "epochs must be"),
        (["train", "classifier", "--dataset", "npz:{tmp}/missing.npz"], "missing.npz"),
        (["train", "classifier", "--device", "cuda:7", "--store", "{tmp}"], "CUDA"),
        (["eval", "--classifier", "{tmp}/none.pt"], "no such checkpoint"),
        (["eval", "--classifier", "{tmp}/ae.pt"], "not a classifier"),
        (["eval", "--classifier", "{tmp}/rgb.pt"], "takes 3x32x32 images"),
        (["data", "info", "mnist", "--data-dir", "{tmp}"], "mnist"),
        (["data", "download", "svhn", "--data-dir", "{tmp}"], "svhn"),
        (["data", "download", "mnist"], "--data-dir"),
        (["data", "mnist-test-split", "--data-dir", "{tmp}", "--out", "{tmp}/x.npz"],
         "t10k"),
        (["data", "info", "npz:{tmp}/garbage.npz"], "garbage.npz"),
        (["data", "info", "npz:{tmp}/nan.npz"], "NaN"),
        (["train", "classifier", "--dataset", "npz:{tmp}/nan.npz"], "NaN"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path: Path, capsys, argv, message) -> None:
    save_checkpoint(tmp_path / "ae.pt", build_model("conv-ae"), "conv-ae", {})
    save_checkpoint(tmp_path / "rgb.pt", build_model("lenet5", in_channels=3, image_size=32),
                    "lenet5", {"in_channels": 3, "image_size": 32})
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    nan = np.full((4, 1, 8, 8), np.nan, dtype=np.float32)
    np.savez(tmp_path / "nan.npz", x_train=nan, y_train=np.zeros(4, np.int64), x_test=nan,
             y_test=np.zeros(4, np.int64))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "cuda" in " ".join(argv):
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert message in err
    assert err.startswith("aerobust: error:") and err.count("\n") == 1
    assert "Traceback" not in err


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "AEROBUST_STORE": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "aerobust.cli", "eval", "--classifier",
                           str(tmp_path / "x.pt")], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("aerobust: error:") and "Traceback" not in proc.stderr


def test_every_command_has_help(capsys) -> None:
    for argv in (["--help"], ["train", "classifier", "--help"], ["eval", "--help"],
                 ["data", "--help"], ["data", "mnist-test-split", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        assert "usage" in capsys.readouterr().out


def test_mnist_test_split_command(tmp_path: Path, capsys, mnist_dir: Path) -> None:
    code, out, _ = _run(capsys, "data", "mnist-test-split", "--data-dir", str(mnist_dir),
                        "--out", str(tmp_path / "m.npz"), "--json")
    assert code == 0
    info = json.loads(out)
    assert (info["n_train"], info["n_test"]) == (8000, 2000)
    assert info["shape"] == [1, 28, 28]
