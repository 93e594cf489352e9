"""Each table or figure of the paper as an experiment: a grid of cached result cells."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from aerobust.experiments import audit, figure2, figure4, table1, table2, table3, table4
from aerobust.experiments.common import Cells, ExperimentConfig, Row, Workspace, write_outputs

# In the paper's order, then the audit of the paper's models: the report lists them so.
EXPERIMENTS: dict[str, ModuleType] = {"table1": table1, "table2": table2, "figure2": figure2,
                                       "table3": table3, "table4": table4, "figure4": figure4,
                                       "audit": audit}


def run_experiment(name: str, ws: Workspace, out_dir: Path) -> tuple[list[Row], dict[str, str]]:
    """Run (or finish) experiment ``name``; write its JSON, CSV and Markdown to ``out_dir``."""
    module = EXPERIMENTS[name]
    runner: Callable[[Workspace, Path], list[Row]] = module.run
    rows = runner(ws, out_dir)
    return rows, write_outputs(out_dir, name, rows, module.markdown(rows))


def cell_count(name: str, ws: Workspace) -> int:
    """How many cells experiment ``name`` has under ``ws``'s config, without running it."""
    counter: Callable[[Workspace], int] = EXPERIMENTS[name].cell_count
    return counter(ws)


__all__ = ["EXPERIMENTS", "Cells", "ExperimentConfig", "Row", "Workspace", "cell_count",
           "run_experiment"]
