"""``benchmarks/autoattack_reference.py`` runs for hours on the real models, so its core
is checked here on a tiny model and a few images: the three runs of every cell, the
targets and the result files, rewritten after every cell."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("pyautoattack")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "autoattack_reference.py"
MNIST = ROOT.parent / "shared" / "data" / "mnist"
sys.path.insert(0, str(SCRIPT.parent))
import autoattack_reference as bench  # noqa: E402


def _tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[0] = (y[0] + 1) % 10  # one point misclassified clean: robust under none
    return model, x, y


def test_core_writes_every_cell_with_the_three_runs(tmp_path: Path) -> None:
    model, x, y = _tiny()
    report = {"machine": {"cpu": "test", "cpu_count": 1, "torch": torch.__version__,
                          "torch_threads": 1, "pyautoattack": "0.2.0", "aerobust": "x",
                          "python": "3", "load_average_at_start": [0.0, 0.0, 0.0],
                          "date": "today"},
              "data": {"name": "tiny", "checksum": "0"}, "runs": {"tiny": ["r"]},
              "settings": {"n": 8, "batch_size": 8, "store": "s"},
              "command": "python benchmarks/autoattack_reference.py", "cells": []}
    cells = (("Linf", 0.3), ("Linf", 0.1))
    bench.bench({"tiny": model}, x, y, cells, 8, report, tmp_path, lambda _: None)
    saved = json.loads((tmp_path / "autoattack_reference.json").read_text())
    assert [(c["norm"], c["eps"]) for c in saved["cells"]] == list(cells)
    first, second = saved["cells"]
    assert first["order"] == ["autoattack", "audit", "pgd40"]
    assert second["order"] == ["audit", "autoattack", "pgd40"]  # turns alternate
    for cell in saved["cells"]:
        assert cell["clean_accuracy"] == 7 / 8
        m = cell["methods"]
        for method in bench.METHODS:
            assert 0 <= m[method]["robust_accuracy"] <= 7 / 8
            assert m[method]["seconds"] > 0
        assert m["audit"]["robust_accuracy"] == m["audit"]["robust_accuracy_reported"]
        assert m["autoattack"]["in_box"]
        assert m["autoattack"]["max_perturbation"] <= cell["eps"] + 1e-6
        assert 0 <= m["audit"]["fixed_seconds"] <= m["audit"]["seconds"]
        assert cell["speed_ratio"] == pytest.approx(
            m["autoattack"]["seconds"] / m["audit"]["seconds"])
        assert cell["accuracy_met"] == (m["audit"]["robust_accuracy"] <= min(
            m["autoattack"]["robust_accuracy"], m["pgd40"]["robust_accuracy"]) + 0.005)
    # radii where every point falls at once keep the test fast (a point that stays
    # robust costs the reference seconds of FAB-T and Square)
    assert first["methods"]["autoattack"]["robust_accuracy"] == 0
    assert set(first["methods"]["autoattack"]["sub_attack_seconds"]) == {"apgd-ce"}
    assert first["broken_by_autoattack_only"] == first["broken_by_audit_only"] == 0
    assert saved["targets"]["cells"] == 2
    assert saved["machine"]["load_average_at_end"]
    text = (tmp_path / "autoattack_reference.md").read_text()
    assert text == bench.render(saved)
    assert text.count("| tiny | Linf |") == 2


def test_cells_parse_and_bad_ones_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.parse_args(["--cells", "Linf:0.1, L2:2"]).cells == (("Linf", 0.1),
                                                                     ("L2", 2.0))
    with pytest.raises(SystemExit) as stop:
        bench.parse_args(["--cells", "L3:1"])
    assert stop.value.code == 2 and "Linf, L2 or L1" in capsys.readouterr().err


@pytest.mark.skipif(not (MNIST / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="no MNIST files in ../shared/data/mnist")
def test_a_model_missing_from_the_store_is_named_and_refused(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--models", "advC", "--no-train",
                           "--store", str(tmp_path), "--n", "4"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "lacks classifier-lenet5-mnist-" in lines[0]
    assert "adversarial training" in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing trained
