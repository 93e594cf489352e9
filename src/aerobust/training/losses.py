"""Training losses by name, so a spec can select one as a string."""

from __future__ import annotations

import inspect
import math
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


def temperature(temperature: float = 2.5) -> Loss:
    """Cross-entropy of ``logits / T``: the softmax-temperature defense (C+T).

    T divides the logits inside the training loss only; the trained model returns raw
    logits and is deployed at T=1, so its logits come out about T times larger and its
    softmax saturates: the input gradients of CE shrink (the masking mechanism of
    defensive distillation), not the decision boundary.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not temperature > 0:
        raise UserError(f"temperature must be a positive number, got {temperature!r}")

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits / temperature, y)

    return loss


GCE_NORMALIZERS = ("k-1", "k")


def guided_complement_entropy(alpha: float = 1 / 3, normalizer: str = "k-1") -> Loss:
    """Guided Complement Entropy (Chen et al. 2019, arXiv:1903.09799), the GCE defense.

    ``mean_i p_y^alpha * sum_{j!=y} P_j log P_j / log(K-1)`` with the complement
    distribution ``P_j = p_j / (1 - p_y)``. ``sum P log P`` is minus the entropy of the
    complement, so the value lies in [-1, 0] and *minimising* it (the sign the authors'
    code returns and back-propagates) flattens the wrong classes while the guiding
    factor ``p_y^alpha`` pushes p_y up: the minimum -1 is a confident correct prediction
    with a uniform complement. ``normalizer="k"`` divides by log K as the authors' code
    does (the paper writes log(K-1)); it only rescales the loss.

    Numerics: ``P`` is the softmax of the K-1 complement logits, which equals
    ``p_j/(1-p_y)`` exactly but needs no ``1-p_y`` division (0 once p_y rounds to 1, where
    the authors add 1e-7 and 1e-10 inside the log); ``log P`` comes from ``log_softmax``
    and ``p_y^alpha`` from ``exp(alpha * log p_y)``, so no log or power sees a 0 and the
    loss and its gradient stay finite for any logits.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha >= 0:
        raise UserError(f"GCE alpha must be a number >= 0, got {alpha!r}")
    if normalizer not in GCE_NORMALIZERS:
        raise UserError(f"GCE normalizer must be one of {', '.join(GCE_NORMALIZERS)}, "
                        f"got {normalizer!r}")

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k = logits.shape[1]
        if k < 3:
            raise UserError(f"GCE needs at least 3 classes (a complement of 2), got {k}")
        # indices of the K-1 wrong classes of each sample, in class order
        others = torch.arange(k - 1, device=logits.device).expand(len(y), -1)
        others = others + (others >= y[:, None]).long()
        log_p = logits.log_softmax(dim=1)
        log_comp = logits.gather(1, others).log_softmax(dim=1)
        neg_entropy = (log_comp.exp() * log_comp).sum(dim=1)
        guide = (alpha * log_p.gather(1, y[:, None]).squeeze(1)).exp()
        return (guide * neg_entropy).mean() / math.log(k - 1 if normalizer == "k-1" else k)

    return loss


LOSSES: dict[str, Callable[..., Loss]] = {"ce": cross_entropy, "mse": mse,
                                          "temperature": temperature,
                                          "gce": guided_complement_entropy}


def loss_kwargs(name: str, **given: Any) -> dict[str, Any]:
    """All arguments of loss ``name``, defaults filled in and ``None`` dropped, so a run
    trained with the defaults and one given them explicitly hash to the same spec."""
    if name not in LOSSES:
        raise UserError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
    params = inspect.signature(LOSSES[name]).parameters
    unknown = sorted(k for k, v in given.items() if v is not None and k not in params)
    if unknown:
        raise UserError(f"loss {name} takes no {', '.join(unknown)}")
    kwargs = {k: p.default for k, p in params.items()}
    kwargs.update({k: v for k, v in given.items() if v is not None})
    make_loss(name, **kwargs)  # validate now, not at the first training batch
    return kwargs


def make_loss(name: str, **kwargs: Any) -> Loss:
    if name not in LOSSES:
        raise UserError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
    try:
        return LOSSES[name](**kwargs)
    except TypeError as exc:
        raise UserError(f"loss {name}: {exc}") from exc
