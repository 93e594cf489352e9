"""``aerobust reproduce``: every experiment of a preset, resumable, then the report.

Layout of the output folder (the report reads nothing else)::

    OUT/reproduce.json          preset, command, parts, times, versions
    OUT/reproduce.log           what ran, what was reused, seconds
    OUT/<part>/part.json        resolved config, dataset checksum, finished experiments, runs
    OUT/<part>/<experiment>.json  rows, with the resolved config they ran under
    OUT/<part>/<experiment>.csv   the rows as CSV (drawn by the report)
    OUT/<part>/cells/...        one file per finished cell, named by its key (resume points)
    OUT/<part>/examples.npz     example images for the report
    OUT/report.md, .html, report_files/   the report (``aerobust.report``)

Every file is written atomically, so a run killed at any point (SIGINT or SIGKILL)
resumes from its finished cells and trained models and ends with the numbers an
uninterrupted run gives. One lock per output folder keeps two runs from interleaving.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import multiprocessing
import os
import queue
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from multiprocessing.managers import SyncManager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from aerobust import atomic, cluster
from aerobust.allocator import allocator_settings, retain_freed_memory
from aerobust.corrupt import set_aside
from aerobust.errors import UserError
from aerobust.experiments import EXPERIMENTS, ExperimentConfig, Workspace, run_experiment
from aerobust.experiments.examples import examples_current, write_examples
from aerobust.experiments.workspace import Planned
from aerobust.provenance import library_versions
from aerobust.training import RunStore

LOG = logging.getLogger("aerobust.reproduce")
BACKENDS = ("local", "ray")
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


@dataclass(frozen=True)
class PartPlan:
    """One dataset's share of the work: its folder name and full config."""

    name: str
    config: ExperimentConfig


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold ``OUT/.lock`` for the whole run; a second run on the same folder stops at
    once with a clear message instead of interleaving its writes."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{out}: another `aerobust reproduce` is writing here; wait for "
                            "it to finish, or pass another --out") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    try:
        yield
    finally:
        LOG.removeHandler(handler)
        handler.close()


def _read_json(path: Path) -> dict[str, Any]:
    """The file's object; {} when absent, or when it does not parse (then it is set
    aside, and what it recorded is redone)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if isinstance(data, dict):
        return data
    set_aside(path, "not readable JSON (truncated or edited?)", "redoing what it recorded")
    return {}


def _sessions(previous: dict[str, Any], configs: dict[str, str]) -> list[dict[str, Any]]:
    """The earlier invocations on this folder with the same settings, so that a resumed
    run's wall time is the sum of its sessions and not only the last one's (which may
    have had nothing left to do). One killed mid-run has ``finished`` None: its time is
    unknown. Sessions under other settings did other work and are dropped."""
    return [s for s in previous.get("sessions", []) if s.get("configs") == configs]


def _is_done(ws: Workspace, part_dir: Path, part: dict[str, Any], name: str) -> bool:
    """Finished before under the same config, its rows on disk, and every cell of the
    plan cached under its current key (a changed attack's cells are not)."""
    entry = part.get("experiments", {}).get(name)
    return (entry is not None and entry.get("config_hash") == ws.config.digest
            and isinstance(_read_json(part_dir / f"{name}.json").get("rows"), list)
            and all(p.cached for p in ws.plan(name, part_dir)))


def _run_summaries(ws: Workspace) -> dict[str, dict[str, Any]]:
    return {name: {"arch": run.spec.arch, "kind": run.spec.kind, "epochs": run.spec.epochs,
                   "seed": run.spec.seed, "loss": run.spec.loss,
                   "loss_kwargs": run.spec.loss_kwargs, "method": run.spec.method,
                   "lam": run.spec.lam, "gamma": run.spec.gamma,
                   "adversarial": run.spec.adversarial, "dataset": run.spec.dataset,
                   "metrics": run.metrics}
            for name, run in ws.runs.items()}


def _die_with_parent(parent: int) -> None:
    """A worker process ends with the run: a run killed with SIGKILL cannot stop its
    workers, and orphans would go on computing beside the resumed run (Linux; elsewhere
    a no-op)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _run_in_worker(config: ExperimentConfig, store_root: str, device: str, part_dir: str,
                   name: str, cells: Any, threads: int,
                   allocator: dict[str, int] | None) -> tuple[str, float, int, dict[str, Any]]:
    """One experiment in a worker process: its finished cells go to the parent's queue,
    it takes its share of the CPU threads, and the parent's malloc settings (a spawned
    process starts with the system's)."""
    import torch

    if allocator is not None:
        retain_freed_memory(allocator["trim_threshold"])
    torch.set_num_threads(threads)
    ws = Workspace(config, RunStore(store_root), device=device, progress=False)
    ws.on_cell = lambda row: cells.put(1)
    start = time.perf_counter()
    rows = run_experiment(name, ws, Path(part_dir))
    return name, time.perf_counter() - start, len(rows), _run_summaries(ws)


def plan(plans: Sequence[PartPlan], experiments: Sequence[str],
         out: Path) -> list[dict[str, Any]]:
    """Every cell ``reproduce`` would compute or reuse, in order, with its key, resolved
    spec, code version and whether a finished result is on disk; nothing runs."""
    _check_experiments(experiments)
    cells = []
    for part in plans:
        ws = Workspace(part.config, progress=False)
        cells += [{"part": part.name, **planned.to_dict()}
                  for e in experiments for planned in ws.plan(e, Path(out) / part.name)]
    return cells


def _check_experiments(experiments: Sequence[str]) -> None:
    unknown = [e for e in experiments if e not in EXPERIMENTS]
    if unknown:
        raise UserError(f"unknown experiment {unknown[0]!r}; known: {', '.join(EXPERIMENTS)}")


def reproduce(plans: Sequence[PartPlan], experiments: Sequence[str], out: Path, *,
              preset: str, command: str, store: RunStore | None = None, device: str = "auto",
              jobs: int = 1, progress: bool = True, backend: str = "local",
              address: str = "auto", task_cpus: int = 1) -> dict[str, Path]:
    """Run (or finish) ``experiments`` for every part, then write the report.

    ``backend``: ``local`` runs experiments in ``jobs`` processes of this machine;
    ``ray`` runs the plan's cells as tasks on the Ray cluster at ``address``
    (``auto``: the running one, else a local one), each task with ``task_cpus`` CPUs
    (and a GPU with ``device='cuda'``)."""
    _check_experiments(experiments)
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "ray" and jobs != 1:
        raise UserError("--jobs is for --backend local; on Ray the cluster's CPUs and GPUs "
                        "decide how much runs at once")
    if backend == "ray":  # before anything is written
        cluster.require_ray()
        cluster.check_address(address)
    store = store or RunStore()
    out = Path(out)
    with _locked(out), _logging_to(out / "reproduce.log"):
        started, clock = _now(), time.perf_counter()
        # Every part's data first: missing data fails before anything is written. On
        # Ray the driver only relabels data for substitutes and draws the examples.
        here = device if backend == "local" else "auto"
        spaces = [Workspace(p.config, store, device=here, progress=progress) for p in plans]
        configs = {plan.name: ws.config.digest for plan, ws in zip(plans, spaces, strict=True)}
        session = {"command": command, "started": started, "finished": None, "seconds": None,
                   "configs": configs}
        sessions = [*_sessions(_read_json(out / "reproduce.json"), configs), session]
        manifest = {"preset": preset, "command": command, "parts": [p.name for p in plans],
                    "experiments": list(experiments), "started": sessions[0]["started"],
                    "finished": None, "seconds": None, "sessions": sessions,
                    "versions": library_versions()}
        atomic.write_json(out / "reproduce.json", manifest)
        LOG.info("start: %s", command)
        total = sum(len(ws.cells(e)) for ws in spaces for e in experiments)
        with tqdm(total=total, desc="reproduce", unit="cell", disable=not progress,
                  dynamic_ncols=True, position=0) as bar:
            if backend == "ray":
                _run_on_ray(plans, spaces, experiments, out, store, device, address,
                            task_cpus, bar)
            else:
                for plan, ws in zip(plans, spaces, strict=True):
                    _run_part(plan, ws, experiments, out / plan.name, store, device, jobs, bar)
        session.update(finished=_now(), seconds=time.perf_counter() - clock)
        manifest.update(finished=session["finished"],
                        seconds=sum(s["seconds"] or 0.0 for s in sessions))
        atomic.write_json(out / "reproduce.json", manifest)
        LOG.info("experiments finished in %.1f s", session["seconds"])
        from aerobust.report import write_report

        paths = write_report(out)
        LOG.info("report: %s", ", ".join(str(p) for p in paths.values()))
        return paths


class _Part:
    """A part's bookkeeping (``part.json``): its config, finished experiments, runs."""

    def __init__(self, plan: PartPlan, ws: Workspace, part_dir: Path) -> None:
        part_dir.mkdir(parents=True, exist_ok=True)
        self.plan, self.ws, self.dir = plan, ws, part_dir
        digest = ws.config.digest
        part = _read_json(part_dir / "part.json")
        if part.get("config_hash") != digest:  # another config: its finished list does not hold
            part = {}
        part.update(part=plan.name, dataset=ws.dataset.name, data_checksum=ws.dataset.checksum,
                    family=ws.family, paper_dataset=ws.paper_dataset,
                    config=ws.config.to_dict(), config_hash=digest, seed=ws.config.seed,
                    seeds=ws.config.seeds, versions=library_versions())
        part.setdefault("experiments", {})
        part.setdefault("runs", {})
        self.data = part
        LOG.info("part %s: %s (%s), config %s", plan.name, ws.dataset.name,
                 ws.dataset.checksum, digest)

    def todo(self, experiments: Sequence[str], bar: tqdm) -> list[str]:
        """The experiments left to run; the finished ones count on the bar."""
        todo = []
        for name in experiments:
            if _is_done(self.ws, self.dir, self.data, name):
                bar.update(len(self.ws.cells(name)))
                LOG.info("%s/%s: already finished, reused", self.plan.name, name)
            else:
                todo.append(name)
        self.write()
        return todo

    def finished(self, name: str, seconds: float, n_rows: int, runs: dict[str, Any]) -> None:
        self.data["experiments"][name] = {"seconds": seconds, "rows": n_rows,
                                          "config_hash": self.ws.config.digest,
                                          "finished": _now()}
        self.data["runs"].update(runs)
        self.write()
        LOG.info("%s/%s: %d rows in %.1f s", self.plan.name, name, n_rows, seconds)

    def close(self, todo: Sequence[str]) -> None:
        """The examples for the report (the first seed's C and AE-C), and the record."""
        if todo or not examples_current(self.dir, self.ws.config.digest):
            write_examples(self.ws, self.dir)
            self.data["runs"].update(_run_summaries(self.ws))
        self.write()

    def write(self) -> None:
        atomic.write_json(self.dir / "part.json", self.data)


def _run_part(plan: PartPlan, ws: Workspace, experiments: Sequence[str], part_dir: Path,
              store: RunStore, device: str, jobs: int, bar: tqdm) -> None:
    part = _Part(plan, ws, part_dir)
    todo = part.todo(experiments, bar)
    ws.on_cell = lambda row: bar.update(1)
    if jobs == 1 or len(todo) < 2:
        for name in todo:
            bar.set_postfix_str(f"{plan.name}/{name}")
            start = time.perf_counter()
            rows = run_experiment(name, ws, part_dir)
            part.finished(name, time.perf_counter() - start, len(rows), _run_summaries(ws))
    else:
        _run_parallel(plan, ws, todo, part_dir, store, device, jobs, bar, part.finished)
    part.close(todo)


def _run_on_ray(plans: Sequence[PartPlan], spaces: Sequence[Workspace],
                experiments: Sequence[str], out: Path, store: RunStore, device: str,
                address: str, task_cpus: int, bar: tqdm) -> None:
    """Every part's unfinished cells at once on the cluster; then, on the driver, each
    experiment's rows file (from the cell files) and the examples. An experiment's
    seconds are from the start until its last cell came back (experiments overlap)."""
    parts = [_Part(plan, ws, out / plan.name) for plan, ws in zip(plans, spaces, strict=True)]
    todo = [part.todo(experiments, bar) for part in parts]
    work = [(part.ws, [p for name in names for p in part.ws.plan(name, part.dir)])
            for part, names in zip(parts, todo, strict=True)]
    for _, planned in work:
        bar.update(sum(p.cached for p in planned))
    last: dict[tuple[int, str], float] = {}
    start = time.perf_counter()

    def on_row(ws: Workspace, planned: Planned, row: dict[str, Any]) -> None:
        last[(id(ws), planned.cell.experiment)] = time.perf_counter() - start
        bar.update(1)

    with cluster.connected(address) as ray:
        where = cluster.placement(ray, device, task_cpus)
        LOG.info("ray: %s, tasks on %s with %s", address,
                 where.device, where.resources)
        cluster.run_cells(ray, work, store, where, on_row, bar.set_postfix_str)
    for part, names in zip(parts, todo, strict=True):
        for name in names:
            rows = run_experiment(name, part.ws, part.dir)  # every cell is on disk now
            part.finished(name, last.get((id(part.ws), name), 0.0), len(rows),
                          _run_summaries(part.ws))
        part.close(names)


def _run_parallel(plan: PartPlan, ws: Workspace, todo: list[str], part_dir: Path,
                  store: RunStore, device: str, jobs: int, bar: tqdm, finished: Any) -> None:
    """Independent experiments in ``jobs`` worker processes, the CPU threads split
    between them. Models they share train once: the run store locks each run, so a
    second worker waits for the first and reuses its weights."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")
    manager = SyncManager(ctx=context)
    manager.start(_die_with_parent, (os.getpid(),))
    parent = (os.getpid(),)
    with manager, ProcessPoolExecutor(jobs, mp_context=context, initializer=_die_with_parent,
                                      initargs=parent) as pool:
        cells = manager.Queue()
        pending: set[Future] = {
            pool.submit(_run_in_worker, ws.config, str(store.root), device, str(part_dir),
                        name, cells, threads, allocator_settings()) for name in todo}
        try:
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                with contextlib.suppress(queue.Empty):
                    while True:
                        cells.get_nowait()
                        bar.update(1)
                for future in done:
                    name, seconds, n_rows, runs = future.result()
                    finished(name, seconds, n_rows, runs)
        except BaseException:
            for future in pending:
                future.cancel()
            raise


# what differs between two runs that computed the same numbers
TIMING_FIELDS = frozenset({"cell_seconds", "seconds", "images_per_second"})


def untimed(value: Any) -> Any:
    """``value`` without timings at any depth (an audit row nests its rungs' seconds)."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in TIMING_FIELDS}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def numbers(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Every experiment's rows in a ``reproduce`` folder, by ``part/experiment.json``,
    without their timings: two runs (two backends, a killed and resumed run, two
    machines) computed the same numbers exactly when these are equal."""
    return {f"{path.parent.name}/{path.name}": untimed(json.loads(path.read_text())["rows"])
            for path in sorted(Path(out).glob("*/*.json")) if path.name != "part.json"}


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as typed, for the record."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["aerobust", *args])
