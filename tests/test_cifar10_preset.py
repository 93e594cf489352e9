"""``aerobust reproduce --preset cifar10`` end to end, on a small archive in the official
CIFAR-10 format made here.

The preset is meant for a GPU and the real archive is 163 MiB, so no other test runs its
code path: the archive extracted from ``--data-dir``, the Python-2 batches unpickled, the
preset's VGG16 classifier, the ResNet-110 substitute of Table 2(a) and its eps values,
through every experiment to the report. Only the epochs and image counts are cut down.
"""

from __future__ import annotations

import functools
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from aerobust.cli import EXPERIMENT_NAMES, main
from aerobust.data import registry
from aerobust.data.cifar10 import BATCHES_DIR, TEST_BATCH, TRAIN_BATCHES, load_cifar10
from aerobust.data.dataset import from_arrays
from aerobust.data.sources import CIFAR10_ARCHIVE
from tests.data.conftest import py2_batch_pickle

pytestmark = pytest.mark.usefixtures("one_thread")

PER_BATCH, N_TEST = 20, 40  # 5 x 20 training images, 40 test images
# The tiny sizes of ``TINY`` (tests/conftest.py) with fewer images, as a VGG16 is slow
# on a CPU, and the preset's own eps values and eps sweep. The audit looks at one image:
# one that a model classifies right and PGD cannot break climbs the whole ladder, ~25 s
# per audit on a VGG16 here (these barely trained models get it wrong: ~0.6 s).
SMALL = ["--classifier-epochs", "1", "--ae-epochs", "1", "--pgd-steps", "2", "--n", "4",
         "--masking-n", "2", "--masking-pgd-steps", "2", "--lambdas", "0,1", "--gammas", "0,1",
         "--n-cw", "2", "--cw-steps", "5", "--cw-binary-steps", "2", "--deepfool-steps", "3",
         "--audit-budget", "quick", "--audit-n", "1"]
TITLES = ("## Table 1", "## Table 2", "## Table 3", "## Table 4", "## Fig. 2", "## Fig. 4",
          "## Audit")


def learnable_batch(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n images as the official batches hold them, (n, 3072) uint8 rows (R, G, B planes),
    the ten classes equally often: a colour and a bright band of rows per class, in noise
    (the nearest class mean tells them apart)."""
    y = rng.permutation(np.arange(n) % 10)
    palette = np.array([(rgb >> 16 & 255, rgb >> 8 & 255, rgb & 255) for rgb in (
        0xE6194B, 0x3CB44B, 0xFFE119, 0x4363D8, 0xF58231, 0x911EB4, 0x46F0F0, 0xF032E6,
        0xBCF60C, 0x008080)])
    x = palette[y][:, :, None, None] * 0.6 + rng.normal(0, 24, (n, 3, 32, 32))
    for i, c in enumerate(y):
        x[i, :, 3 * c : 3 * c + 3, :] += 90
    return np.clip(x, 0, 255).astype(np.uint8).reshape(n, 3072), y


def write_archive(data_dir: Path, work: Path) -> tuple[np.ndarray, ...]:
    """``data_dir/cifar-10-python.tar.gz`` in the official layout; returns the arrays."""
    rng = np.random.default_rng(0)
    folder = work / BATCHES_DIR
    folder.mkdir(parents=True)
    batches = {name: learnable_batch(PER_BATCH, rng) for name in TRAIN_BATCHES}
    batches[TEST_BATCH] = learnable_batch(N_TEST, rng)
    for name, (data, labels) in batches.items():
        (folder / name).write_bytes(py2_batch_pickle(data, labels.tolist()))
    data_dir.mkdir()
    with tarfile.open(data_dir / CIFAR10_ARCHIVE, "w:gz") as tar:
        tar.add(folder, arcname=BATCHES_DIR)
    train = [batches[name] for name in TRAIN_BATCHES]
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
            *batches[TEST_BATCH])


def test_cifar10_preset_runs_every_experiment_on_the_official_format(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir, out, store = tmp_path / "data", tmp_path / "out", tmp_path / "store"
    x_tr, y_tr, x_te, y_te = write_archive(data_dir, tmp_path / "made")
    # The made archive cannot have the official md5 nor 50,000/10,000 images: only those
    # two checks are relaxed, where the registry calls the loader (tests/data tests them).
    monkeypatch.setattr(registry, "load_cifar10", functools.partial(
        load_cifar10, expected=(len(y_tr), len(y_te)), verify_md5=False))
    assert main(["reproduce", "--preset", "cifar10", "--data-dir", str(data_dir),
                 "--out", str(out), "--store", str(store), "--quiet", *SMALL]) == 0

    # The archive was extracted from --data-dir, and the batches read are the ones written.
    assert sorted(p.name for p in (data_dir / BATCHES_DIR).iterdir()) == sorted(
        [*TRAIN_BATCHES, TEST_BATCH])
    wrote = from_arrays("cifar10", x_tr.reshape(-1, 3, 32, 32), y_tr,
                        x_te.reshape(-1, 3, 32, 32), y_te, 10)
    part = json.loads((out / "cifar10" / "part.json").read_text())
    assert (part["dataset"], part["family"], part["paper_dataset"]) == (
        "cifar10", "cifar", "cifar10")
    assert part["data_checksum"] == wrote.checksum

    # The preset's own settings, the sizes above aside.
    config = part["config"]
    assert (config["classifier"], config["substitute_arch"]) == ("vgg16", "resnet110")
    assert config["eps"] == [5.0, 10.0]
    assert config["eps_sweep"] == [0.0, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0]

    # VGG16 and the ResNet-110 substitute trained, on this data, into the run store.
    archs = {run["arch"] for run in part["runs"].values()}
    assert {"vgg16", "resnet110", "conv-ae", "latent-classifier"} <= archs
    for name, run in part["runs"].items():
        assert run["dataset"] == "cifar10"
        spec = json.loads((store / name / "spec.json").read_text())
        assert spec["data_checksum"] == wrote.checksum
        assert (store / name / "model.pt").is_file()

    # Every experiment wrote its rows, on VGG16 and, in Table 2(a), through ResNet-110.
    assert set(part["experiments"]) == set(EXPERIMENT_NAMES)
    rows = {name: json.loads((out / "cifar10" / f"{name}.json").read_text())["rows"]
            for name in EXPERIMENT_NAMES}
    for name in EXPERIMENT_NAMES:
        assert rows[name] and part["experiments"][name]["rows"] == len(rows[name])
    assert {part["runs"][r["classifier_run"]]["arch"] for r in rows["table1"]} == {"vgg16"}
    subs = {r["substitute"]: part["runs"][r["substitute_classifier_run"]]["arch"]
            for r in rows["table2"]}
    assert subs == {"different": "resnet110", "same": "vgg16"}
    assert {r["eps"] for r in rows["audit"] if r.get("norm", "Linf") == "Linf"} == {5.0, 10.0}
    assert {r["eps"] for r in rows["audit"] if r.get("norm") == "L2"} == {0.5}

    # The report: every table and figure, with the cifar10 part in it.
    manifest = json.loads((out / "reproduce.json").read_text())
    assert manifest["preset"] == "cifar10" and manifest["finished"]
    assert manifest["parts"] == ["cifar10"]
    report = (out / "report.md").read_text()
    for title in TITLES:
        assert title in report
    assert "### `cifar10`" in report and "resnet110" in report
    assert (out / "report.html").is_file() and (out / "cifar10" / "examples.npz").is_file()
    assert "part cifar10" in (out / "reproduce.log").read_text()
