"""Tasks beyond ``compute``'s, for the sensitivity experiment: G read other ways
(``aerobust.gradient_measures``) on clean or adversarial inputs.

``compute``'s own source is part of every cell's key, so a task added there would
recompute every result ever made; the tasks here are dispatched by ``compute_cell``
instead, and a cell's key covers their code through its ``components``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aerobust.experiments.compute import Row, compute
from aerobust.gradient_measures import gradient_per_image

if TYPE_CHECKING:
    from aerobust.experiments.compute import Context
    from aerobust.experiments.spec import Cell

GRADIENT_MEASURE = "gradient-measure"


def gradient_measure(cell: Cell, ctx: Context) -> Row:
    """G of ``cell.model`` read as ``params["output"]`` and ``params["reduction"]``, at
    the clean test images or at the adversarials of ``params["attack"]`` on the model
    itself (``inputs="adversarial"``); the per-image values kept for intervals."""
    p = cell.params
    x, y = ctx.images(p["n"])
    if p["inputs"] == "adversarial":
        x = ctx.crafted(cell.model, p["attack"], p["n"], p["batch_size"]).adversarials
    values = gradient_per_image(ctx.model(cell.model), x, y, p["output"], p["reduction"],
                                p["batch_size"])
    return {"gradient_amplitude": float(values.mean()), "per_image": values.tolist(),
            "n": len(x), "input_dims": x[0].numel(), **ctx.runs_of(cell.model)}


TASKS = {GRADIENT_MEASURE: gradient_measure}


def compute_cell(cell: Cell, ctx: Context) -> Row:
    """A cell's row: ``compute``'s, or one of the tasks here."""
    task = TASKS.get(cell.task)
    return compute(cell, ctx) if task is None else task(cell, ctx)
