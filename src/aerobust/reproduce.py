"""``aerobust reproduce``: every experiment of a preset, resumable, then the report.

Layout of the output folder (the report reads nothing else)::

    OUT/reproduce.json          preset, command, parts, times, versions
    OUT/reproduce.log           what ran, what was reused, seconds
    OUT/<part>/part.json        resolved config, dataset checksum, finished experiments, runs
    OUT/<part>/<experiment>.json  rows, with the resolved config they ran under
    OUT/<part>/<experiment>.csv   the rows as CSV (drawn by the report)
    OUT/<part>/<experiment>.partial.json  an unfinished experiment's finished cells
                                (``--partial``: a report of a run still going on)
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
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from aerobust import atomic, backends
from aerobust.backends import run_summaries
from aerobust.corrupt import set_aside
from aerobust.errors import UserError
from aerobust.experiments import EXPERIMENTS, ExperimentConfig, Workspace
from aerobust.experiments.examples import examples_current, write_examples
from aerobust.provenance import library_versions
from aerobust.training import RunStore

LOG = logging.getLogger("aerobust.reproduce")


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


def partial_report(plans: Sequence[PartPlan], experiments: Sequence[str],
                   out: Path) -> dict[str, Path]:
    """The report of a run still going on (or stopped), computing nothing: each
    unfinished experiment's cells finished so far go to ``<experiment>.partial.json``
    with how many of its cells that is, and the report shows them marked as partial.
    It reads the run's files and writes only those and the report (every write atomic),
    so it needs no lock and can run beside the run it reports on."""
    _check_experiments(experiments)
    out = Path(out)
    if not (out / "reproduce.json").is_file():
        raise UserError(f"{out}: no run here yet (no reproduce.json); start it with the same "
                        "command without --partial")
    for part in plans:
        ws = Workspace(part.config, progress=False)
        part_dir = out / part.name
        meta = _read_json(part_dir / "part.json")
        if meta.get("config_hash") != ws.config.digest:
            raise UserError(f"{part_dir}: the run there has other settings (config "
                            f"{meta.get('config_hash')}, these are {ws.config.digest}); pass "
                            "the options the run was started with")
        for name in experiments:
            if _is_done(ws, part_dir, meta, name):
                continue
            planned = ws.plan(name, part_dir)
            rows = [row for row in (p.load() for p in planned) if row is not None]
            atomic.write_json(part_dir / f"{name}.partial.json",
                              {"experiment": name, "config": ws.config.to_dict(),
                               "config_hash": ws.config.digest,
                               "paper_dataset": ws.paper_dataset, **ws.provenance(),
                               "cells": len(planned), "rows": rows})
    from aerobust.report import write_report

    return write_report(out)


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
    runner = backends.get(backend, jobs=jobs, device=device, address=address,
                          task_cpus=task_cpus)
    runner.check()  # before anything is written
    store = store or RunStore()
    out = Path(out)
    with _locked(out), _logging_to(out / "reproduce.log"):
        started, clock = _now(), time.perf_counter()
        # Every part's data first: missing data fails before anything is written.
        spaces = [Workspace(p.config, store, device=runner.driver_device, progress=progress)
                  for p in plans]
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
            parts = [_Part(plan, ws, out / plan.name, experiments, bar)
                     for plan, ws in zip(plans, spaces, strict=True)]
            runner.run(parts, store, bar)
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
    """A part's bookkeeping (``part.json``): its config, finished experiments, runs; the
    experiments left to run (``todo``) are what a backend runs (``backends.Part``)."""

    def __init__(self, plan: PartPlan, ws: Workspace, part_dir: Path,
                 experiments: Sequence[str], bar: tqdm) -> None:
        part_dir.mkdir(parents=True, exist_ok=True)
        self.name, self.ws, self.dir = plan.name, ws, part_dir
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
        self.todo = self._left(experiments, bar)

    def _left(self, experiments: Sequence[str], bar: tqdm) -> list[str]:
        """The experiments left to run; the finished ones count on the bar."""
        todo = []
        for name in experiments:
            if _is_done(self.ws, self.dir, self.data, name):
                bar.update(len(self.ws.cells(name)))
                LOG.info("%s/%s: already finished, reused", self.name, name)
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
        LOG.info("%s/%s: %d rows in %.1f s", self.name, name, n_rows, seconds)

    def close(self) -> None:
        """The examples for the report (the first seed's C and AE-C), and the record."""
        if self.todo or not examples_current(self.dir, self.ws.config.digest):
            write_examples(self.ws, self.dir)
            self.data["runs"].update(run_summaries(self.ws))
        self.write()

    def write(self) -> None:
        atomic.write_json(self.dir / "part.json", self.data)


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
