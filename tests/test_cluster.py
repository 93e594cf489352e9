"""``--backend ray`` on a real cluster of separate processes: a head node and a second
worker node (``ray start``), and the driver (``aerobust reproduce``) as a third process.

Every process runs inside a fresh network namespace that has only loopback, so no byte
leaves the machine whatever Ray binds to; the head is 127.0.0.1, the second node
127.0.0.2. Each test stops every process it started (all of the namespace's), even
when it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from aerobust.cli import main
from aerobust.reproduce import numbers, untimed
from tests.conftest import process_tree, reproduce_args

ray = pytest.importorskip("ray", reason="the Ray backend's tests need `pip install "
                                        "'aerobust[ray]'`")

pytestmark = pytest.mark.usefixtures("one_thread")

PORT = 6390
# the `ray` command of this interpreter's environment, activated or not
RAY = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name(
    "ray").is_file() else "ray"
DEFENSE = """
import torch
from torch import nn

class Round(nn.Module):
    def forward(self, x):
        return torch.round(x * 7) / 7
"""
# token authentication on, with this run's own token (nothing read from ~/.ray)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
       "RAY_AUTH_TOKEN": uuid.uuid4().hex}


def _namespaces_work() -> str | None:
    """Why network namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    name = f"aerobust-probe-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace ({made.stderr.strip()})"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


_NO_NETNS = _namespaces_work()
if _NO_NETNS is not None:
    pytestmark = [pytestmark, pytest.mark.skip(
        reason=f"the cluster tests run Ray inside a loopback-only network namespace: "
               f"{_NO_NETNS}")]


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid``."""
    children = process_tree()
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Cluster:
    """A head node and a worker node, one CPU each, in namespace ``ns``."""

    def __init__(self, ns: str, root: Path) -> None:
        self.ns, self.root = ns, root
        self.address = f"127.0.0.1:{PORT}"
        self.head = self._start("head", ["--head", f"--port={PORT}",
                                         "--node-ip-address=127.0.0.1",
                                         "--include-dashboard=false",
                                         f"--temp-dir={root / 'ray'}"])
        self._ready(self.head, "head")
        self.worker = self._start("worker", [f"--address={self.address}",
                                             "--node-ip-address=127.0.0.2"])
        self._ready(self.worker, "worker")

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        with open(self.root / f"{name}.log", "w") as log:  # the process keeps its own copy
            return subprocess.Popen(
                ["ip", "netns", "exec", self.ns, RAY, "start", "--block", "--num-cpus=1",
                 "--disable-usage-stats", *args],
                stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)

    def _ready(self, proc: subprocess.Popen, name: str) -> None:
        log = self.root / f"{name}.log"
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert proc.poll() is None, f"ray start ({name}) failed:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"ray start ({name}) hangs:\n{log.read_text()}"
            time.sleep(0.2)

    def run(self, args: list[str]) -> subprocess.Popen:
        """The driver: ``aerobust ARGS`` in the namespace, against this cluster."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns, sys.executable, "-m", "aerobust.cli", *args,
             "--backend", "ray", "--address", self.address],
            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)

    def worker_tasks(self) -> list[int]:
        """The processes running one of our tasks on the worker node now."""
        return [p for p in _descendants(self.worker.pid)
                if _title(p).startswith(("ray::_cells_task", "ray::_train_task"))]

    def kill_worker(self) -> None:
        victims = [self.worker.pid, *_descendants(self.worker.pid)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.worker.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    ns = f"aerobust-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    root = Path(f"/tmp/ab-{ns[-8:]}")  # short: Ray's socket paths have a length limit
    root.mkdir()
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"],
                       check=True)
        yield Cluster(ns, root)
    finally:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                             text=True).stdout.split() and time.monotonic() < deadline:
            time.sleep(0.1)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, tiny_npz: str) -> Path:
    """The local backend's rows: what every cluster run must give."""
    root = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each task: one CPU, one thread
    try:
        assert main(reproduce_args(tiny_npz, root / "out", root / "store")) == 0
    finally:
        torch.set_num_threads(threads)
    return root / "out"


# the fault tests: every kind of task (training, substitutes trained on another
# model's labels, attack and transfer cells) without the audit's minute
FAULTS = ("table1", "table2", "table4", "figure4")


def _subset(numbers: dict[str, object], experiments: tuple[str, ...]) -> dict[str, object]:
    return {k: v for k, v in numbers.items() if k.split("/")[1][:-5] in experiments}


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return out


def test_cluster_run_gives_the_local_rows(cluster: Cluster, tiny_npz: str, local: Path,
                                          tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    _finish(cluster.run(reproduce_args(tiny_npz, out, tmp_path / "store")))
    assert numbers(out) == numbers(local)
    log = (out / "reproduce.log").read_text()
    assert "tasks on cpu" in log and "trained classifier-lenet5" in log
    assert (out / "report.md").is_file()
    # only the driver wrote the store: every run has its weights and record
    runs = list((tmp_path / "store").iterdir())
    assert runs and all((r / "model.pt").is_file() and (r / "run.json").is_file()
                        for r in runs)
    # an audit placed on the cluster gives the local audit's result, with an AE in front
    # or a defense from the user's file (its module is importable nowhere: it travels
    # by value)
    clf, ae = (next((tmp_path / "store").glob(f"{kind}-*")) for kind in
               ("classifier-lenet5", "autoencoder-conv-ae"))
    (tmp_path / "defense.py").write_text(DEFENSE)
    for front in (["--ae", str(ae)], ["--defense", f"{tmp_path / 'defense.py'}:Round"]):
        audit = ["audit", "--classifier", str(clf), *front, "--dataset", tiny_npz,
                 "--eps", "40", "--budget", "quick", "--json", "--quiet"]
        remote = json.loads(_finish(cluster.run(audit)))
        assert main(audit) == 0
        here = json.loads(capsys.readouterr().out)
        assert untimed(remote) == untimed(here)


def test_a_worker_node_killed_mid_run_and_the_run_finishes(
        cluster: Cluster, tiny_npz: str, local: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    only = ["--only", ",".join(FAULTS)]
    driver = cluster.run(reproduce_args(tiny_npz, out, tmp_path / "store", *only))
    deadline = time.monotonic() + 300
    while not cluster.worker_tasks():  # a task of ours is running on the worker node
        assert driver.poll() is None, driver.communicate()[1]
        assert time.monotonic() < deadline, "no task ever ran on the worker node"
        time.sleep(0.01)
    cluster.kill_worker()
    _finish(driver)
    assert numbers(out) == _subset(numbers(local), FAULTS)


def test_a_killed_driver_resumes_without_recomputing_finished_cells(
        cluster: Cluster, tiny_npz: str, local: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = reproduce_args(tiny_npz, out, tmp_path / "store", "--only", ",".join(FAULTS))
    driver = cluster.run(args)
    cells = out / "d" / "cells"
    deadline = time.monotonic() + 300
    while sum(1 for _ in cells.glob("*/*.json")) < 20:
        assert driver.poll() is None, driver.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    before = {p: p.read_bytes() for p in cells.glob("*/*.json")}
    assert not (out / "report.md").exists()
    _finish(cluster.run(args))
    after = {p: p.read_bytes() for p in cells.glob("*/*.json")}
    assert len(after) > len(before)
    assert {p: after[p] for p in before} == before  # not one finished cell recomputed
    assert numbers(out) == _subset(numbers(local), FAULTS)


