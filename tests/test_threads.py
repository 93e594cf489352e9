"""Stored numbers do not depend on the caller's torch thread count (aerobust.threads):
the same cells, computed by a process running 1 and 2 intra-op threads, give the same
weights and the same rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from aerobust.experiments import ExperimentConfig, Workspace, run_experiment
from aerobust.reproduce import untimed
from aerobust.threads import STORED_WORK_THREADS
from aerobust.training import RunStore
from tests.conftest import make_dataset


def _table1(npz: str, out: Path, threads: int) -> tuple[list[dict], dict[str, np.ndarray]]:
    """table1 at tiny sizes in a fresh store, the caller at ``threads`` threads; its
    rows and the trained classifier's weights."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        config = ExperimentConfig(dataset=npz, classifier_epochs=2, ae_epochs=1, n_eval=12,
                                  n_cw=4, cw_steps=5, cw_binary_steps=1, pgd_steps=3,
                                  deepfool_steps=3, eps=(40.0,))
        ws = Workspace(config, RunStore(out / "store"), "cpu", progress=False)
        rows = run_experiment("table1", ws, out / "results")
        assert torch.get_num_threads() == threads  # the caller's count is restored
    finally:
        torch.set_num_threads(before)
    run = next(r for r in ws.runs.values() if r.spec.kind == "classifier")
    return rows, {k: v.numpy() for k, v in run.load().state_dict().items()}


def test_one_and_two_threads_store_the_same_numbers(tmp_path: Path) -> None:
    assert STORED_WORK_THREADS == 1
    ds = make_dataset(n_train=96, n_test=12, classes=4)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=ds.x_train.numpy(), y_train=ds.y_train.numpy(),
             x_test=ds.x_test.numpy(), y_test=ds.y_test.numpy())
    rows1, weights1 = _table1(f"npz:{path}", tmp_path / "one", 1)
    rows2, weights2 = _table1(f"npz:{path}", tmp_path / "two", 2)
    assert weights1.keys() == weights2.keys()
    for name in weights1:  # bit for bit
        assert weights1[name].tobytes() == weights2[name].tobytes(), name
    assert [r["key"] for r in rows1] == [r["key"] for r in rows2]
    assert untimed(rows1) == untimed(rows2)
