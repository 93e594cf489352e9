"""Training losses by name, so a spec can select one as a string."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from aerobust.errors import UserError

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy() -> Loss:
    return F.cross_entropy


def mse() -> Loss:
    return F.mse_loss


LOSSES: dict[str, Callable[..., Loss]] = {"ce": cross_entropy, "mse": mse}


def make_loss(name: str, **kwargs: Any) -> Loss:
    if name not in LOSSES:
        raise UserError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
    try:
        return LOSSES[name](**kwargs)
    except TypeError as exc:
        raise UserError(f"loss {name}: {exc}") from exc
