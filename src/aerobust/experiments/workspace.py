"""Running a plan: each experiment's cells, each read back from its cell file when it
was computed before under the same key, else computed and written atomically (so an
interrupted run redoes only unfinished cells), then the experiment's rows in one file."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aerobust import atomic
from aerobust.corrupt import set_aside
from aerobust.data import Dataset, load_dataset
from aerobust.experiments import (
    audit,
    figure2,
    figure4,
    sensitivity,
    table1,
    table2,
    table3,
    table4,
)
from aerobust.experiments.compute import Context, Row
from aerobust.experiments.config import ExperimentConfig, resolve
from aerobust.experiments.measures import compute_cell
from aerobust.experiments.recipes import Setup
from aerobust.experiments.spec import Cell
from aerobust.names import ALL_EXPERIMENTS
from aerobust.provenance import library_versions
from aerobust.training import Run, RunStore

_MODULES = {m.EXPERIMENT: m for m in (table1, table2, figure2, table3, table4, figure4, audit,
                                      sensitivity)}
# Each experiment's plan, by name, in ALL_EXPERIMENTS's order.
EXPERIMENTS: dict[str, Callable[[Setup], list[Cell]]] = {
    name: _MODULES[name].cells for name in ALL_EXPERIMENTS}


@dataclass(frozen=True)
class Planned:
    """A cell of the plan with its key and whether its result is already on disk."""

    cell: Cell
    key: str
    path: Path

    @property
    def cached(self) -> bool:
        return self.load() is not None

    def load(self) -> Row | None:
        """The row computed before under this key; None when there is none. A cell file
        that does not parse, or holds another cell's row, is set aside, so the cell is
        computed again."""
        if not self.path.is_file():
            return None
        try:
            row = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            problem = "not a readable cell file (truncated or edited?)"
        else:
            if isinstance(row, dict) and row.get("key") == self.key:
                return row
            problem = "holds another cell's row, not the one of its key"
        set_aside(self.path, problem)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "cached": self.cached, **self.cell.spec(),
                "code": self.cell.code()}


class Workspace:
    """A resolved config on its data, with the store and device its cells run on."""

    def __init__(self, config: ExperimentConfig, store: RunStore | None = None,
                 device: str = "auto", progress: bool = True) -> None:
        self.dataset: Dataset = load_dataset(config.dataset, config.data_dir)
        self.config = resolve(config, self.dataset)
        self.setup = Setup(self.config, self.dataset)
        self.store = store or RunStore()
        self.context = Context(self.dataset, self.store, device, progress)
        # called with each finished cell's row, cached or fresh: drives reproduce's
        # overall progress bar
        self.on_cell: Callable[[Row], None] | None = None

    @property
    def family(self) -> str:
        return self.setup.family

    @property
    def paper_dataset(self) -> str:
        return self.setup.paper_dataset

    @property
    def runs(self) -> dict[str, Run]:
        return self.context.runs

    def cells(self, experiment: str) -> list[Cell]:
        return EXPERIMENTS[experiment](self.setup)

    def plan(self, experiment: str, out_dir: Path) -> list[Planned]:
        directory = Path(out_dir) / "cells" / experiment
        keys = [(cell, cell.key(self.dataset.checksum)) for cell in self.cells(experiment)]
        return [Planned(cell, key, directory / f"{key}.json") for cell, key in keys]

    def provenance(self) -> dict[str, Any]:
        return {"dataset": self.dataset.name, "data_checksum": self.dataset.checksum,
                "versions": library_versions()}

    def run(self, planned: Planned) -> Row:
        """One cell's row: read back when computed before, else computed now."""
        row = planned.load()
        if row is None:
            start = time.perf_counter()
            values = compute_cell(planned.cell, self.context)
            row = self.record(planned, values, time.perf_counter() - start)
        if self.on_cell is not None:
            self.on_cell(row)
        return row

    def record(self, planned: Planned, values: Row, seconds: float) -> Row:
        """Write a computed cell's row (its values, where it sits, what made it) to its
        cell file, atomically; returned in the stored form, so a resumed run returns
        exactly what a fresh one did."""
        cell = planned.cell
        row = {"experiment": cell.experiment, **cell.coords, **cell.info, **values,
               "cell_seconds": seconds, "key": planned.key, "spec": cell.spec(),
               "code": cell.code(), **self.provenance()}
        atomic.write_json(planned.path, row)
        return json.loads(json.dumps(row))


def run_experiment(name: str, ws: Workspace, out_dir: Path) -> list[Row]:
    """Run (or finish) experiment ``name``; write its rows to ``<out_dir>/<name>.json``
    with the resolved config they ran under."""
    rows = [ws.run(p) for p in ws.plan(name, out_dir)]
    atomic.write_json(Path(out_dir) / f"{name}.json",
                      {"experiment": name, "config": ws.config.to_dict(),
                       "config_hash": ws.config.digest, "paper_dataset": ws.paper_dataset,
                       **ws.provenance(), "rows": rows})
    return rows
