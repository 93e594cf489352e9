"""Every file and folder a user names: any failure to read or create it is one line on
stderr naming the path, and exit 2, never a traceback (``aerobust.paths``)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from aerobust.cli import main
from aerobust.models import build_model, save_checkpoint
from tests.conftest import make_dataset

# what a user may name by mistake, in place of the file or folder an option expects
FILE_BAD = ("empty", "random", "text", "folder")
FOLDER_BAD = ("empty", "random", "text")

# {bad}: the bad path; {npz}, {clf}, {tmp}: good data, a good classifier, a scratch folder
FILE_OPTIONS = {
    "--classifier": "eval --dataset npz:{npz} --classifier {bad}",
    "--ae": "eval --dataset npz:{npz} --classifier {clf} --ae {bad}",
    "attack --classifier": "attack --dataset npz:{npz} --attack fgsm --eps 8 --classifier {bad}",
    "audit --ae": "audit --dataset npz:{npz} --eps 8 --classifier {clf} --ae {bad}",
    "--defense": "audit --dataset npz:{npz} --eps 8 --classifier {clf} --defense {bad}:Front",
    "npz": "train classifier --dataset npz:{bad} --store {tmp}/store",
    "data info npz": "data info npz:{bad}",
    "IDX": "data mnist-test-split --data-dir {tmp}/mnist --out {tmp}/split.npz",
    "CIFAR archive": "data info cifar10 --data-dir {tmp}/cifar",
}
FOLDER_OPTIONS = {
    "audit --out": "audit --dataset npz:{npz} --eps 8 --classifier {clf} --out {bad}",
    "reproduce --out": "reproduce --dataset npz:{npz} --preset mnist --out {bad}",
    "experiment --out": "experiment table1 --dataset npz:{npz} --out {bad}",
    "train --store": "train classifier --dataset npz:{npz} --store {bad}",
    "reproduce --store": "reproduce --dataset npz:{npz} --preset mnist --out {tmp}/o "
                         "--store {bad}",
    "experiment --store": "experiment table1 --dataset npz:{npz} --out {tmp}/o --store {bad}",
    "train --data-dir": "train classifier --dataset mnist --data-dir {bad}",
    "data info --data-dir": "data info mnist --data-dir {bad}",
    "data download --data-dir": "data download mnist --data-dir {bad}",
    "mnist-test-split --data-dir": "data mnist-test-split --data-dir {bad} --out {tmp}/s.npz",
    "report": "report {bad}",
}
# where the bad file sits for options naming a folder that holds it
INSIDE = {"IDX": "mnist/t10k-images-idx3-ubyte", "CIFAR archive": "cifar/cifar-10-python.tar.gz",
          "--defense": "front.py"}


def _make_bad(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(3000))
    else:
        path.write_text("this is a text file, not what the option wants\n" * 20)


@pytest.fixture
def good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Good data and a good classifier, so each command reaches the bad path."""
    ds = make_dataset(n_train=12, n_test=6)
    np.savez(tmp_path / "d.npz", x_train=ds.x_train.numpy(), y_train=ds.y_train.numpy(),
             x_test=ds.x_test.numpy(), y_test=ds.y_test.numpy())
    save_checkpoint(tmp_path / "clf.pt", build_model("lenet5", num_classes=3), "lenet5",
                    {"num_classes": 3})
    labels = tmp_path / "mnist" / "t10k-labels-idx1-ubyte"  # the IDX case's good half
    labels.parent.mkdir()
    labels.write_bytes(struct.pack(">II", 2049, 4) + bytes(4))
    monkeypatch.setenv("AEROBUST_SKIP_MD5", "1")  # reach the parsers, past the md5 check
    monkeypatch.setenv("AEROBUST_STORE", str(tmp_path / "default-store"))
    monkeypatch.chdir(tmp_path)
    return {"npz": str(tmp_path / "d.npz"), "clf": str(tmp_path / "clf.pt"),
            "tmp": str(tmp_path)}


def _check(tmp_path: Path, capsys, good: dict[str, str], option: str, command: str,
           kind: str) -> None:
    bad = tmp_path / INSIDE.get(option, "bad")
    _make_bad(bad, kind)
    argv = command.format(bad=bad, **good).split()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, out, err)
    assert err.startswith("aerobust: error:") and err.count("\n") == 1, err
    assert str(bad) in err or str(bad.resolve()) in err, err


@pytest.mark.parametrize("kind", FILE_BAD)
@pytest.mark.parametrize("option", FILE_OPTIONS)
def test_a_bad_file_is_one_line_naming_it(tmp_path: Path, capsys, good, option: str,
                                         kind: str) -> None:
    _check(tmp_path, capsys, good, option, FILE_OPTIONS[option], kind)


@pytest.mark.parametrize("kind", FOLDER_BAD)
@pytest.mark.parametrize("option", FOLDER_OPTIONS)
def test_a_file_where_a_folder_is_expected_is_one_line_naming_it(
        tmp_path: Path, capsys, good, option: str, kind: str) -> None:
    _check(tmp_path, capsys, good, option, FOLDER_OPTIONS[option], kind)


def test_a_folder_where_an_output_file_is_expected(tmp_path: Path, capsys, good) -> None:
    _check(tmp_path, capsys, good, "mnist-test-split --out",
           "data mnist-test-split --data-dir {tmp}/mnist --out {bad}", "folder")


def test_an_unwritable_folder_is_one_line(tmp_path: Path, capsys, good) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code = main(["train", "classifier", "--dataset", f"npz:{good['npz']}", "--store",
                 str(locked / "store")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(locked) in err
