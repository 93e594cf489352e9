"""Shared by the audit's CLI tests: a classifier trained on the synthetic set, and a
file of user defenses."""

from __future__ import annotations

from pathlib import Path

import pytest

from aerobust.cli import main
from tests.test_cli import _npz

DEFENSE = '''
import torch
from torch import nn

class Round(nn.Module):
    def forward(self, x):
        return torch.round(x * 7) / 7

class Shrink(nn.Module):
    def forward(self, x):
        return x[..., ::2, ::2]
'''


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    tmp = tmp_path_factory.mktemp("cli-audit")
    data = f"npz:{_npz(tmp / 'd.npz')}"
    assert main(["train", "classifier", "--dataset", data, "--epochs", "3", "--batch-size",
                 "16", "--store", str(tmp / "store"), "--quiet", "--json"]) == 0
    run = next((tmp / "store").iterdir())
    (tmp / "defense.py").write_text(DEFENSE)
    return data, str(run), tmp
