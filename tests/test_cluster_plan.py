"""How ``--backend ray`` cuts a plan into tasks, and how a run travels between stores;
no cluster needed (``test_cluster.py`` runs a real one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aerobust.backends.ray import (
    MAX_CELLS_PER_TASK,
    Placement,
    _failure,
    _group,
    _needs,
    chunks,
    placement,
)
from aerobust.errors import UserError
from aerobust.experiments import ExperimentConfig, Workspace
from aerobust.training import RunStore, default_spec
from tests.conftest import make_dataset


@pytest.fixture
def ws(tiny_npz: str) -> Workspace:
    return Workspace(ExperimentConfig(dataset=tiny_npz, seeds=2, substitute_labels="true"),
                     progress=False)


@pytest.mark.parametrize("slots", [1, 2, 64])
def test_tasks_share_a_model_and_cover_the_plan_once(ws: Workspace, tmp_path: Path,
                                                     slots: int) -> None:
    planned = [p for e in ("table1", "table2", "audit") for p in ws.plan(e, tmp_path)]
    tasks = chunks(planned, slots)
    assert sorted(p.key for t in tasks for p in t) == sorted(p.key for p in planned)
    for task in tasks:
        assert 1 <= len(task) <= MAX_CELLS_PER_TASK
        assert len({_group(p.cell) for p in task}) == 1  # one model (or substitute) each
        assert len(task) == 1 or not any(p.cell.task == "audit" for p in task)
    # more slots, smaller tasks, so that every slot gets work; one slot, fewer loads
    if slots == 64:
        assert all(len(t) == 1 for t in tasks)
    if slots == 1:  # every audit cell is a task of its own; the rest share them
        audits = sum(p.cell.task == "audit" for p in planned)
        assert len(tasks) < audits + (len(planned) - audits) / 2


def test_transfer_tasks_keep_one_attack_together(tmp_path: Path, tiny_npz: str) -> None:
    """With true labels one substitute serves several targets: its adversarials of one
    attack are crafted once, in one task, for all of them."""
    ws = Workspace(ExperimentConfig(dataset=tiny_npz, substitute_labels="true"),
                   progress=False)
    planned = [p for p in ws.plan("figure2", tmp_path) if p.cell.task == "transfer"]
    for task in chunks(planned, 1):
        assert len({_group(p.cell) for p in task}) == 1
    by_attack: dict[str, list[int]] = {}
    for i, task in enumerate(chunks(planned, 1)):
        for p in task:
            key = json.dumps([str(p.cell.substitute), p.cell.params["attack"]], sort_keys=True)
            by_attack.setdefault(key, []).append(i)
    assert max(len(tasks) for tasks in by_attack.values()) > 1  # several targets each
    assert all(len(set(tasks)) == 1 for tasks in by_attack.values())


def test_a_task_needs_the_model_and_the_substitute(ws: Workspace, tmp_path: Path) -> None:
    transfer = next(p.cell for p in ws.plan("table2", tmp_path))
    needed = _needs(transfer)
    assert transfer.model.classifier in needed and transfer.substitute is not None
    assert transfer.substitute.classifier in needed


def test_a_run_exported_and_adopted_elsewhere_is_the_same_run(tmp_path: Path) -> None:
    data = make_dataset(n_train=32, n_test=8)
    spec = default_spec("lenet5", data, seed=0, epochs=1)
    there, here = RunStore(tmp_path / "worker"), RunStore(tmp_path / "driver")
    run = there.train(spec, data, "cpu", progress=False)
    adopted = here.adopt(spec, there.export(run))
    assert adopted.path == here.path(spec) and here.finished(spec) is not None
    assert adopted.metrics == run.metrics
    for a, b in zip(run.load().state_dict().values(), adopted.load().state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    # a run finished here already is kept, never overwritten
    stamp = adopted.checkpoint.stat().st_mtime_ns
    assert here.adopt(spec, there.export(run)).checkpoint.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="a run's files"):
        here.adopt(spec, {"model.pt": b""})


def test_task_failures_reach_the_user_as_one_line_or_as_they_are() -> None:
    ray = pytest.importorskip("ray", reason="needs `pip install 'aerobust[ray]'`")
    wrong = UserError("--eps 300: out of range")
    assert _failure(ray, ray.exceptions.RayTaskError("f", "traceback", wrong)) is wrong
    bug = ray.exceptions.RayTaskError("f", "traceback", ZeroDivisionError("x"))
    assert _failure(ray, bug) is bug  # a bug keeps its traceback
    lost = _failure(ray, ray.exceptions.WorkerCrashedError())
    assert isinstance(lost, UserError) and "run the same command again" in str(lost)


class _Cluster:
    """What ``placement`` reads of a cluster: its resources."""

    def __init__(self, **resources: float) -> None:
        self.resources = resources

    def cluster_resources(self) -> dict[str, float]:
        return self.resources


def test_tasks_ask_for_a_gpu_where_they_run_on_one() -> None:
    gpus = _Cluster(CPU=16, GPU=2)
    assert placement(gpus, "auto", 2) == Placement({"num_gpus": 1, "num_cpus": 2}, "cuda", 2)
    assert placement(gpus, "cpu", 1) == Placement({"num_cpus": 1}, "cpu", 1)
    assert placement(_Cluster(CPU=2), "auto", 1) == Placement({"num_cpus": 1}, "cpu", 1)
    with pytest.raises(UserError, match="has no GPU"):
        placement(_Cluster(CPU=2), "cuda", 1)
    with pytest.raises(UserError, match="--task-cpus must be at least 1"):
        placement(gpus, "cpu", 0)
