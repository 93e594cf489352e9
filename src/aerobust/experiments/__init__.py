"""Each table or figure of the paper as an experiment: a list of cells (frozen specs)
declared from a resolved config, each computed by ``compute`` and cached one file each.
Drawing them is ``aerobust.report``'s job."""

from __future__ import annotations

from aerobust.experiments.compute import Context, Row, compute
from aerobust.experiments.config import ExperimentConfig, resolve
from aerobust.experiments.spec import Cell, Model, Net, code_version
from aerobust.experiments.workspace import EXPERIMENTS, Planned, Workspace, run_experiment

__all__ = ["EXPERIMENTS", "Cell", "Context", "ExperimentConfig", "Model", "Net", "Planned",
           "Row", "Workspace", "code_version", "compute", "resolve", "run_experiment"]
