"""Replaying how an attack shrinks its batch, for tests that compare recorded batches
with the clean images they came from."""

from __future__ import annotations

import torch
from torch import nn


def active_rows(seen: list[torch.Tensor], y: torch.Tensor, model: nn.Module,
                ) -> list[torch.Tensor]:
    """Which samples each recorded batch of one call (one block) holds.

    A sample leaves the batch after the first batch in which ``model`` misclassifies
    it, and the order is kept (PGD's and APGD's iterates, Square's clean forward and
    queries all follow this rule); this replays it on the recorded batches and checks
    their sizes follow it, so a test can compare every row with its own clean image."""
    rows = torch.arange(len(y))
    out = []
    for batch in seen:
        assert len(batch) == len(rows)
        out.append(rows)
        with torch.no_grad():
            rows = rows[model(batch).argmax(1) == y[rows]]
    return out
