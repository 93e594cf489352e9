"""``benchmarks/cifar10_cuda.py`` is run by users on GPU machines we cannot test on: its
smoke mode must work on a CPU, and without CUDA it must stop with one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "cifar10_cuda.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_smoke_on_cpu_writes_positive_rates(tmp_path: Path) -> None:
    proc = _run("--device", "cpu", "--smoke", "--repeats", "2", "--out", str(tmp_path),
                "--work", str(tmp_path / "work"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "cifar10_cuda.json").read_text())
    assert result["smoke"] and result["device"] == "cpu"
    assert result["data"]["train_images"] == 500 and result["data"]["test_images"] == 100
    assert result["data"]["archive_seconds"] > 0 and result["data"]["load_seconds"] > 0
    phases = result["phases"]
    assert set(phases) == {"train_vgg16", "train_conv_ae", "pgd_ae_c", "infer_ae_c"}
    for name, phase in phases.items():
        assert phase["images_per_second"] > 0, name
    for name in ("train_vgg16", "train_conv_ae"):
        assert phases[name]["eval_images_per_second"] > 0, name
        assert len(phases[name]["train_seconds"]) == 3  # warm-up epoch + 2 timed
    assert phases["pgd_ae_c"]["attack"]["keep"] == "last"
    assert (tmp_path / "cifar10_cuda.md").read_text() == proc.stdout
    assert list((tmp_path / "work").iterdir()) == []  # the archive is cleaned up


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_without_cuda_the_default_device_stops_with_one_line() -> None:
    proc = _run()
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "no CUDA device is present" in lines[0]
    assert f"torch.version.cuda={torch.version.cuda}" in lines[0]
    assert "torch.cuda.is_available()=False" in lines[0]
