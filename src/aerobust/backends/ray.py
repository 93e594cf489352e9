"""``--backend ray``: the plan's cells and the models they need, as Ray tasks (``Ray``),
and ``audit`` as one task. ``import ray`` happens only when this backend runs.

Units of work:

- a **training task** per distinct network (two experiments asking for one model wait
  on one task); a substitute trained on another model's predictions is submitted once
  that model is back;
- a **cells task** per group of cells on one model, which loads the model once (a
  transfer's group is its substitute, each attack's targets together, so the
  adversarials are crafted once); an audit cell has a task of its own.

Each task asks for what it needs (one GPU with ``--device cuda``, CPUs otherwise), so a
mixed cluster places the work. Weights and rows travel back as task results and only
the driver writes the run store and the cell files, atomically: workers need no shared
filesystem, no two processes write one file, and a driver killed mid-run resumes from
the cells already written, as the local backend does. A task lost with its node is
retried elsewhere (``MAX_RETRIES``); an error in a task stops the run with that error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from aerobust.allocator import retain_freed_memory
from aerobust.backends.base import Backend, Part, Progress, run_summaries
from aerobust.errors import UserError
from aerobust.experiments import run_experiment
from aerobust.experiments.compute import Context, Row, spec_json
from aerobust.experiments.measures import compute_cell
from aerobust.experiments.spec import Cell, Model, Net
from aerobust.experiments.workspace import Planned, Workspace
from aerobust.training import Run, RunStore, TrainSpec
from aerobust.training.defenses import DefenseSpec, train_stored

INSTALL = "pip install 'aerobust[ray]'"
# how often Ray runs a task again after its worker or node died (not after an error
# the task raised: those stop the run)
MAX_RETRIES = 3
# the most cells one task computes: fewer tasks load fewer models, more keep every
# worker busy to the end
MAX_CELLS_PER_TASK = 8
# cells that run alone: an audit is minutes of attacks, so grouping saves nothing but a
# model load and costs balance, progress and, with the driver killed, finished work
# (a task's rows come back when it ends)
ALONE = frozenset({"audit"})
# its lines go to reproduce.log with the rest of the run's record
LOG = logging.getLogger("aerobust.reproduce")


def require_ray() -> Any:
    """The ``ray`` module, or a user error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--backend ray needs the `ray` package, which the default install "
                        f"leaves out: {INSTALL}") from None
    return ray


def check_address(address: str, timeout: float = 10.0) -> None:
    """A user error unless ``address`` is ``auto`` or a HOST:PORT that accepts a
    connection: Ray itself retries an unreachable head for minutes."""
    if address == "auto":
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--address {address!r}: expected HOST:PORT (the head's "
                        "`ray start --head --port=PORT`) or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UserError(f"--address {address}: nothing answers there ({exc.strerror or exc}); "
                        "is the head node started (`ray start --head --port="
                        f"{port}`)?") from None


@contextlib.contextmanager
def connected(address: str = "auto") -> Iterator[Any]:
    """Connected to the Ray cluster at ``address`` (``auto``: the running one, else a
    local one started now on 127.0.0.1 and stopped at the end)."""
    ray = require_ray()
    if ray.is_initialized():  # the caller connected already (Python use): theirs to close
        yield ray
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports leave the machine
    options = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address == "auto":
            try:
                ray.init(address="auto", **options)
            except ConnectionError:
                ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UserError(f"--address {address}: cannot connect to a Ray cluster there "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class Placement:
    """What each task asks the cluster for, and the device it then runs on."""

    resources: dict[str, float]
    device: str
    threads: int


def placement(ray: Any, device: str, cpus: int) -> Placement:
    """``auto`` is CUDA when the cluster has a GPU; CUDA asks each task for one."""
    if cpus < 1:
        raise UserError(f"--task-cpus must be at least 1, got {cpus}")
    gpus = ray.cluster_resources().get("GPU", 0)
    if device == "auto":
        device = "cuda" if gpus >= 1 else "cpu"
    if device.startswith("cuda"):
        if gpus < 1:
            raise UserError(f"--device {device}: the Ray cluster has no GPU")
        return Placement({"num_gpus": 1, "num_cpus": cpus}, device, cpus)
    return Placement({"num_cpus": cpus}, device, cpus)


def _in_task(threads: int) -> None:
    """A task's process settings: its share of the threads, the project's malloc."""
    retain_freed_memory()
    torch.set_num_threads(threads)


def _train_task(spec: TrainSpec | DefenseSpec, data: Any, device: str, threads: int,
                prior: Sequence[tuple[TrainSpec, dict[str, bytes]]] = ()) -> dict[str, bytes]:
    """Train one network in a scratch store; its files go back to the driver. ``prior``:
    finished runs its training loads (the classifier a defense guards), so the task
    does not train them again."""
    _in_task(threads)
    with tempfile.TemporaryDirectory(prefix="aerobust-train-") as tmp:
        store = RunStore(tmp)
        for prior_spec, files in prior:
            store.adopt(prior_spec, files)
        return store.export(train_stored(spec, data, store, device, progress=False))


class _ShippedRuns(RunStore):
    """A task's store: only the runs the driver sent. Training here would repeat, on one
    worker, work the plan gives to a training task: a bug, so it fails loudly."""

    def train(self, spec: TrainSpec, *args: Any, **kwargs: Any) -> Run:
        raise RuntimeError(f"run {spec.run_name} was not shipped to this task")


def _cells_task(cells: list[Cell],
                runs: list[tuple[Net, TrainSpec | DefenseSpec, dict[str, Any], Any]],
                data: Any, device: str, threads: int) -> list[tuple[Row, float]]:
    """Compute ``cells`` on the runs sent with them; each row with its seconds."""
    import ray

    _in_task(threads)
    weights = ray.get([ref for *_, ref in runs])
    with tempfile.TemporaryDirectory(prefix="aerobust-cells-") as tmp:
        ctx = Context(data, _ShippedRuns(tmp), device, progress=False)
        for (net, spec, metrics, _), blob in zip(runs, weights, strict=True):
            run = Run(ctx.store.path(spec), spec, metrics)
            run.path.mkdir(exist_ok=True)
            run.checkpoint.write_bytes(blob)
            ctx.adopt(net, run)
        out = []
        for cell in cells:
            start = time.perf_counter()
            values = compute_cell(cell, ctx)
            out.append((values, time.perf_counter() - start))
        return out


def _nets(model: Model) -> list[Net]:
    return [model.classifier] + ([model.autoencoder] if model.autoencoder else [])


def _needs(cell: Cell) -> list[Net]:
    """The networks a cell's task loads."""
    return _nets(cell.model) + (_nets(cell.substitute) if cell.substitute else [])


def _group(cell: Cell) -> str:
    """Cells that share their expensive half: a transfer's substitute (its adversarials
    are crafted once per attack and scored on every target), else the attacked model."""
    if cell.task == "transfer" and cell.substitute is not None:
        return spec_json({"substitute": dataclasses.asdict(cell.substitute)})
    return spec_json(cell.model)


def chunks(planned: Sequence[Planned], slots: int) -> list[list[Planned]]:
    """The cells split into tasks of one ``_group`` each, about four tasks per slot and
    at most ``MAX_CELLS_PER_TASK`` cells; the cells of one attack (a transfer's targets)
    stay in one task unless they are more than a task holds; ``ALONE`` cells go one per
    task, first (the longest first keeps the end of the run short)."""
    size = max(1, min(MAX_CELLS_PER_TASK, math.ceil(len(planned) / (4 * max(1, slots)))))
    groups: dict[str, dict[str, list[Planned]]] = {}
    tasks: list[list[Planned]] = [[p] for p in planned if p.cell.task in ALONE]
    for p in planned:
        if p.cell.task not in ALONE:
            attack = spec_json(p.cell.params.get("attack") or {})
            groups.setdefault(_group(p.cell), {}).setdefault(attack, []).append(p)
    for by_attack in groups.values():
        task: list[Planned] = []
        for run in by_attack.values():
            if task and len(task) + len(run) > size:
                tasks.append(task)
                task = []
            for i in range(0, len(run), size):  # a run larger than a task is cut
                task += run[i : i + size]
                if len(task) >= size:
                    tasks.append(task)
                    task = []
        if task:
            tasks.append(task)
    return tasks


@dataclass
class _Net:
    """A network's state on the driver: its run once finished (and its weights in the
    object store), or whether its training task is out."""

    net: Net
    part: int  # which of the run's datasets it trains on
    ws: Workspace
    run: Run | None = None
    spec: TrainSpec | DefenseSpec | None = None
    weights: Any = None  # the object ref of its model file, put once
    submitted: bool = False


@dataclass
class _Task:
    """A cells task: its cells, the networks it loads, whether it is out."""

    part: int
    ws: Workspace
    cells: list[Planned]
    nets: list[_Net] = field(default_factory=list)
    submitted: bool = False


def _failure(ray: Any, exc: Exception) -> Exception:
    """A task's error as the driver raises it: a user error as itself; a task lost
    after its retries as a user error that says the finished cells are kept."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, UserError):
            return cause
        return exc
    return UserError(f"a task failed on the Ray cluster after {MAX_RETRIES} retries "
                     f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                     "; the finished cells are kept: run the same command again to resume")


def run_cells(ray: Any, work: Sequence[tuple[Workspace, Sequence[Planned]]], store: RunStore,
              where: Placement, on_row: Callable[[Workspace, Planned, Row], None],
              on_status: Callable[[str], None] | None = None) -> None:
    """Compute every planned cell of ``work`` on the cluster; ``on_row`` gets each row
    once the driver has written it. Networks already in ``store`` are not trained."""
    train = ray.remote(max_retries=MAX_RETRIES, **where.resources)(_train_task)
    cells_fn = ray.remote(max_retries=MAX_RETRIES, **where.resources)(_cells_task)
    capacity = ray.cluster_resources()
    slots = int(capacity.get("GPU", 0) if "num_gpus" in where.resources
                else capacity.get("CPU", 1) // where.threads)
    nets: dict[tuple[int, str], _Net] = {}

    def net_state(part: int, net: Net) -> _Net:
        return nets.setdefault((part, spec_json(net)), _Net(net, part, work[part][0]))

    tasks: list[_Task] = []
    data = {}
    for i, (ws, planned) in enumerate(work):
        todo = [p for p in planned if not p.cached]
        if not todo:
            continue
        data[i] = ray.put(ws.dataset)
        for chunk in chunks(todo, slots):
            needed = {spec_json(n): n for p in chunk for n in _needs(p.cell)}.values()
            tasks.append(_Task(i, ws, chunk, [net_state(i, n) for n in needed]))

    def deps(n: _Net) -> list[_Net]:
        """The networks whose predictions ``n`` trains on, and the classifier it guards."""
        found = [] if n.net.labels_from is None else [
            net_state(n.part, d) for d in _nets(n.net.labels_from)]
        guarded = n.net.guarded()
        return found if guarded is None else [*found, net_state(n.part, guarded)]

    def prior(n: _Net) -> list[tuple[TrainSpec, dict[str, bytes]]]:
        guarded = n.net.guarded()
        if guarded is None:
            return []
        g = net_state(n.part, guarded)
        assert g.spec is not None and g.run is not None  # deps finish first
        return [(g.spec, store.export(g.run))]

    def finish(n: _Net, run: Run) -> None:
        n.ws.context.adopt(n.net, run)
        n.run = run
        n.weights = ray.put(run.checkpoint.read_bytes())

    LOG.info("ray: %d cells in %d tasks, %d networks, %d slots",
             sum(len(t.cells) for t in tasks), len(tasks), len(nets), slots)
    pending: dict[Any, tuple[str, Any]] = {}
    while any(not t.submitted for t in tasks) or pending:
        # networks whose inputs are ready: reuse a finished run, else train it
        changed = True
        while changed:
            changed = False
            for n in list(nets.values()):
                if n.submitted or not all(d.run is not None for d in deps(n)):
                    continue
                n.submitted = changed = True
                n.spec, trained_on = n.ws.context.train_spec(n.net)
                run = store.finished(n.spec)
                if run is not None:
                    finish(n, run)
                    continue
                ref = data[n.part] if trained_on is n.ws.dataset else ray.put(trained_on)
                pending[train.remote(n.spec, ref, where.device, where.threads,
                                     prior(n))] = ("train", n)
        for t in tasks:
            if not t.submitted and all(n.run is not None for n in t.nets):
                t.submitted = True
                runs = [(n.net, n.spec, n.run.metrics, n.weights) for n in t.nets]
                ref = cells_fn.remote([p.cell for p in t.cells], runs, data[t.part],
                                      where.device, where.threads)
                pending[ref] = ("cells", t)
        if on_status is not None:
            training = sum(kind == "train" for kind, _ in pending.values())
            on_status(f"{training} training, {len(pending) - training} cell tasks on Ray")
        if not pending:
            raise RuntimeError("cluster scheduler: tasks left but none can start")
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            kind, item = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:
                raise _failure(ray, exc) from None
            if kind == "train":
                finish(item, store.adopt(item.spec, result))
                LOG.info("trained %s on the cluster", item.spec.run_name)
            else:
                for planned, (values, seconds) in zip(item.cells, result, strict=True):
                    on_row(item.ws, planned, item.ws.record(planned, values, seconds))


class Ray(Backend):
    """Every part's unfinished cells at once as tasks on the Ray cluster at ``address``
    (``auto``: the running one, else a local one), each task with ``task_cpus`` CPUs
    (and a GPU with ``device='cuda'``); then, on the driver, each experiment's rows file
    (from the cell files) and the examples. An experiment's seconds are from the start
    until its last cell came back (experiments overlap)."""

    name = "ray"

    def __init__(self, address: str = "auto", task_cpus: int = 1, device: str = "auto") -> None:
        self.address, self.task_cpus, self.device = address, task_cpus, device

    @property
    def driver_device(self) -> str:
        return "auto"  # the driver only relabels data for substitutes and draws examples

    def check(self) -> None:
        require_ray()
        check_address(self.address)

    def run(self, parts: Sequence[Part], store: RunStore, bar: Progress) -> None:
        work = [(part.ws, [p for name in part.todo for p in part.ws.plan(name, part.dir)])
                for part in parts]
        for _, planned in work:
            bar.update(sum(p.cached for p in planned))
        last: dict[tuple[int, str], float] = {}
        start = time.perf_counter()

        def on_row(ws: Workspace, planned: Planned, row: dict[str, Any]) -> None:
            last[(id(ws), planned.cell.experiment)] = time.perf_counter() - start
            bar.update(1)

        with connected(self.address) as ray:
            where = placement(ray, self.device, self.task_cpus)
            LOG.info("ray: %s, tasks on %s with %s", self.address,
                     where.device, where.resources)
            run_cells(ray, work, store, where, on_row, bar.set_postfix_str)
        for part in parts:
            for name in part.todo:
                rows = run_experiment(name, part.ws, part.dir)  # every cell is on disk now
                part.finished(name, last.get((id(part.ws), name), 0.0), len(rows),
                              run_summaries(part.ws))
            part.close()


def _audit_task(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                options: dict[str, Any], device: str, threads: int) -> Any:
    from aerobust.audit import audit

    _in_task(threads)
    return audit(model.to(device), x, y, eps, **options)


def audit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
          address: str = "auto", device: str = "auto", cpus: int = 1,
          **options: Any) -> Any:
    """``aerobust.audit`` run as a task on the Ray cluster at ``address``, placed on a
    node with the resources it asks for (a GPU with ``device='cuda'``): audit a model
    from a laptop on the lab's GPU machine. The model travels pickled (a defense
    loaded from a file goes by value), so the worker needs only aerobust."""
    check_address(address)
    with connected(address) as ray:
        where = placement(ray, device, cpus)
        task = ray.remote(max_retries=MAX_RETRIES, **where.resources)(_audit_task)
        ref = task.remote(model.cpu(), x, y, eps, options, where.device, where.threads)
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as exc:
            raise _failure(ray, exc) from None
