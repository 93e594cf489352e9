"""The interface every execution backend implements: run the experiments a plan left to
do, part by part, and say when each has finished. What is left, and the record of what
finished, are ``reproduce``'s (planning and bookkeeping); how it runs is the backend's."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from aerobust.experiments import Workspace
from aerobust.training import RunStore


class Progress(Protocol):
    """The progress bar a backend advances (a ``tqdm``): one step per finished cell."""

    def update(self, n: float | None = 1) -> Any: ...

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> Any: ...


class Part(Protocol):
    """One dataset's share of the plan, as a backend sees it: its workspace and folder,
    the experiments left to run, and where each finished one is recorded."""

    name: str
    ws: Workspace
    dir: Path
    todo: list[str]

    def finished(self, name: str, seconds: float, n_rows: int,
                 runs: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class Backend(ABC):
    """Runs the experiments of a plan's parts; ``check`` fails before anything is written."""

    name: str

    @property
    @abstractmethod
    def driver_device(self) -> str:
        """The device of the workspaces on this process (where a backend computes here)."""

    @abstractmethod
    def check(self) -> None:
        """A user error now for what would fail later (a missing package, no cluster)."""

    @abstractmethod
    def run(self, parts: Sequence[Part], store: RunStore, bar: Progress) -> None:
        """Run every part's ``todo`` experiments, calling ``finished`` for each and
        ``close`` for every part once its experiments are done."""


def run_summaries(ws: Workspace) -> dict[str, dict[str, Any]]:
    """The trained runs a workspace used, as the plain values ``part.json`` records."""
    return {name: {"arch": run.spec.arch, "kind": run.spec.kind, "epochs": run.spec.epochs,
                   "seed": run.spec.seed, "loss": run.spec.loss,
                   "loss_kwargs": run.spec.loss_kwargs, "method": run.spec.method,
                   "lam": run.spec.lam, "gamma": run.spec.gamma,
                   "adversarial": run.spec.adversarial, "dataset": run.spec.dataset,
                   "metrics": run.metrics}
            for name, run in ws.runs.items()}
