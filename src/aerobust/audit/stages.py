"""A model as the stages an auditor can reason about: shape-preserving parts in front
(an autoencoder, a preprocessing step) and the classifier behind them.

Probes test each stage on its own, BPDA replaces the backward pass of the stages they
flag, and a transfer attack crafts on the classifier with the stages removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from aerobust.attacks.bpda import BPDA
from aerobust.models import AEClassifier


@dataclass(frozen=True)
class Stages:
    """``front`` stages applied in order, then ``classifier``; ``rebuild`` puts them
    back together, with some front stages replaced."""

    front: tuple[tuple[str, nn.Module], ...]
    classifier: nn.Module

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.front]

    def rebuild(self, replace: dict[str, nn.Module] | None = None) -> nn.Module:
        replace = replace or {}
        parts = [replace.get(name, module) for name, module in self.front]
        return nn.Sequential(*parts, self.classifier)

    def with_bpda(self, names: list[str]) -> nn.Module:
        """The model with the named stages' backward passes replaced by identity."""
        return self.rebuild({name: BPDA(module) for name, module in self.front
                             if name in names})


def split(model: nn.Module, x: Tensor) -> Stages:
    """Split ``model`` for inputs like ``x``: the parts of an ``AEClassifier``, or the
    leading children of an ``nn.Sequential`` whose output has the input's shape (nested
    ones opened up). Any other model is one classifier with no front stages."""
    front: list[tuple[str, nn.Module]] = []
    probe = x[:1]
    with torch.no_grad():
        rest = _open(model, "", probe, front)
    return Stages(tuple(front), rest)


def _open(module: nn.Module, prefix: str, probe: Tensor,
          front: list[tuple[str, nn.Module]]) -> nn.Module:
    """Move ``module``'s shape-preserving leading parts into ``front``; return the rest."""
    if isinstance(module, AEClassifier):
        parts = [("autoencoder", module.autoencoder), ("classifier", module.classifier)]
    elif type(module) is nn.Sequential:  # a subclass may have its own forward
        parts = list(module.named_children())
    else:
        return module
    for i, (name, part) in enumerate(parts):
        out = part(probe)
        if not _same_shape(out, probe):
            if i == 0:
                return module
            rest = [p for _, p in parts[i:]]
            return rest[0] if len(rest) == 1 else nn.Sequential(*rest)
        front += _stages_of(part, f"{prefix}{name}", probe)
        probe = out
    return nn.Identity()


def _stages_of(part: nn.Module, name: str, probe: Tensor) -> list[tuple[str, nn.Module]]:
    """A shape-preserving part as one stage, or as its children when it is a plain
    ``nn.Sequential`` each of whose children preserves the shape too."""
    if type(part) is not nn.Sequential or len(part) < 2:
        return [(name, part)]
    inner: list[tuple[str, nn.Module]] = []
    for child_name, child in part.named_children():
        out = child(probe)
        if not _same_shape(out, probe):
            return [(name, part)]
        inner += _stages_of(child, f"{name}.{child_name}", probe)
        probe = out
    return inner


def _same_shape(out: object, probe: Tensor) -> bool:
    return isinstance(out, Tensor) and out.shape == probe.shape
