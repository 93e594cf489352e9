"""The run store: a spec hashes to a run directory; a finished run is reused, an
interrupted one resumes from its last finished epoch."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aerobust import atomic
from aerobust.corrupt import set_aside
from aerobust.data import Dataset
from aerobust.device import resolve_device
from aerobust.errors import CheckpointError, UserError
from aerobust.models import load_model, read_checkpoint, save_checkpoint
from aerobust.provenance import library_versions
from aerobust.threads import stored_work_threads
from aerobust.training.spec import TrainSpec
from aerobust.training.trainer import fit

MODEL_FILE = "model.pt"
RESUME_FILE = "resume.pt"
METRICS_FILE = "metrics.json"
RUN_FILE = "run.json"
# a finished run's files, in the order training writes them
FINISHED_FILES = (MODEL_FILE, METRICS_FILE, RUN_FILE)
# what a finished run consists of: what ``export`` carries to another machine's store
RUN_FILES = ("spec.json", *FINISHED_FILES)


def default_store() -> Path:
    return Path(os.environ.get("AEROBUST_STORE", Path.home() / ".cache" / "aerobust" / "runs"))


@dataclass(frozen=True)
class Run:
    """A finished run: where it lives, how it was trained and what it measured."""

    path: Path
    spec: TrainSpec
    metrics: dict[str, Any]

    @property
    def checkpoint(self) -> Path:
        return self.path / MODEL_FILE

    def load(self, device: str | torch.device = "cpu") -> nn.Module:
        return load_model(self.checkpoint, kind=self.spec.kind, device=device)


def _problem(path: Path, spec: TrainSpec) -> str | None:
    """What is wrong with a finished run's file, if anything: it does not parse, or it
    records another spec than the one its run directory is named after."""
    if path.name == MODEL_FILE:
        try:
            recorded = read_checkpoint(path).get("spec")
        except CheckpointError as exc:
            return str(exc).removeprefix(f"{path}: ")
    else:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return "not readable JSON (truncated or edited?)"
        if not isinstance(data, dict):
            return "not a JSON object"
        if path.name == METRICS_FILE:
            return None
        recorded = data.get("spec")
    if recorded is None:  # nothing recorded (an older store's file): nothing to contradict
        return None
    try:
        # the spec's own class reads it back (a defense's spec is not a TrainSpec)
        same = type(spec).from_dict(recorded).digest == spec.digest
    except (TypeError, ValueError, UserError):
        same = False
    return None if same else "records another training spec than its run's"


@contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """One process trains a run at a time; a second waits, then finds it finished."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class RunStore:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_store()

    def path(self, spec: TrainSpec) -> Path:
        return self.root / spec.run_name

    def finished(self, spec: TrainSpec) -> Run | None:
        """The finished run of ``spec``; None when there is none. A run file that does
        not parse, or belongs to another spec, is set aside, so the run trains again
        (a run killed while its files were written lacks some, and resumes)."""
        path = self.path(spec)
        if not all((path / name).is_file() for name in FINISHED_FILES):
            return None
        for name in FINISHED_FILES:
            problem = _problem(path / name, spec)
            if problem is not None:
                set_aside(path / name, problem, "training the run again")
                return None
        return Run(path, spec, json.loads((path / METRICS_FILE).read_text()))

    def train(
        self,
        spec: TrainSpec,
        dataset: Dataset,
        device: str | torch.device = "auto",
        progress: bool = True,
        on_epoch_end: Callable[[int], None] | None = None,
        fit_fn: Callable[..., tuple[nn.Module, list[dict[str, Any]]]] = fit,
    ) -> Run:
        """Return the finished run for ``spec``, training (or resuming) it if needed.

        ``fit_fn`` is the training loop, called as ``fit`` is (a defense's recipe,
        ``training.defenses``, brings its own); ``spec`` is then any spec with the
        fields the store reads (``run_name``, ``kind``, ``arch``, ``arch_kwargs``,
        ``data_checksum``, ``to_dict``)."""
        if spec.data_checksum != dataset.checksum:
            raise UserError(
                f"spec was made for data {spec.data_checksum}, but {dataset.name} "
                f"has checksum {dataset.checksum}"
            )
        path = self.path(spec)
        with _locked(path):
            run = self.finished(spec)
            if run is not None:
                return run
            atomic.write_json(path / "spec.json", spec.to_dict())
            resume = path / RESUME_FILE
            state = self._read_state(resume) if resume.is_file() else None
            with stored_work_threads():  # the weights must not depend on the machine
                model, history = fit_fn(
                    spec, dataset, resolve_device(device), state=state,
                    save_state=lambda s: atomic.torch_save(s, resume),
                    progress=progress, on_epoch_end=on_epoch_end,
                )
            metrics = {**{k: v for k, v in history[-1].items() if k.startswith("test")},
                       "seconds_per_epoch": sum(h["seconds"] for h in history) / len(history),
                       "history": history}
            provenance = {"spec": spec.to_dict(), "metrics": metrics,
                          "dataset": dataset.name, "dataset_checksum": dataset.checksum,
                          "versions": library_versions()}
            save_checkpoint(path / MODEL_FILE, model, spec.arch, spec.arch_kwargs, **provenance)
            atomic.write_json(path / METRICS_FILE, metrics)
            atomic.write_json(path / RUN_FILE, provenance)
            resume.unlink(missing_ok=True)
            return Run(path, spec, metrics)

    def export(self, run: Run) -> dict[str, bytes]:
        """A finished run's files, to carry it to another machine's store (``adopt``)."""
        return {name: (run.path / name).read_bytes() for name in RUN_FILES}

    def adopt(self, spec: TrainSpec, files: dict[str, bytes]) -> Run:
        """Keep a run trained elsewhere (``export``'s files) in this store as if trained
        here, under the store's lock for that run; a run already finished here is kept.
        The weights are written last: a process killed while adopting leaves the run
        unfinished, never half-finished."""
        if set(files) != set(RUN_FILES):
            raise ValueError(f"a run's files are {RUN_FILES}, got {sorted(files)}")
        path = self.path(spec)
        with _locked(path):
            run = self.finished(spec)
            if run is not None:
                return run
            for name in sorted(files, key=lambda n: n == MODEL_FILE):
                atomic.write_bytes(path / name, files[name])
            (path / RESUME_FILE).unlink(missing_ok=True)
            return Run(path, spec, json.loads(files[METRICS_FILE]))

    @staticmethod
    def _read_state(path: Path) -> dict[str, Any]:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a resume file we cannot read is never silently dropped
            raise CheckpointError(
                f"{path}: cannot read the saved training state ({type(exc).__name__}); "
                "delete it to restart this run from scratch"
            ) from exc
