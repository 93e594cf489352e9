"""How a model with a non-differentiable part offers attacks a differentiable stand-in.

Some defenses choose: PuVAE keeps the closest of its per-label reconstructions (an
arg-min). The choice is piecewise constant, so autograd differentiates through the
chosen branch only and never sees that moving the input changes which branch wins.
BPDA (an identity backward pass) fits a stage that returns roughly its input; a
selection inside a model is no such stage. Such a model offers its own surrogate, in
one documented way:

- a module with a method ``surrogate() -> nn.Module`` (``SURROGATE_METHOD``); the module
  it returns computes the same outputs wherever the choice is clear, is differentiable
  in the choice, shares the module's weights, and carries a ``description`` (one line,
  for the audit's record) of what it replaces and how;
- ``with_surrogates(model)`` is ``model`` with every such module replaced by its
  surrogate (found anywhere inside it, e.g. behind an autoencoder), or None when there is
  none. The model itself is left as it is: attacks step on the surrogate, the audit
  judges every adversarial on the model.
"""

from __future__ import annotations

import copy

from torch import nn

SURROGATE_METHOD = "surrogate"


def _offers(module: nn.Module) -> bool:
    return callable(getattr(module, SURROGATE_METHOD, None))


def descriptions(model: nn.Module) -> list[str]:
    """What the surrogates inside ``model`` replace, one line each (none: ``[]``)."""
    return [str(getattr(getattr(m, SURROGATE_METHOD)(), "description", type(m).__name__))
            for m in model.modules() if _offers(m)]


def with_surrogates(model: nn.Module) -> nn.Module | None:
    """``model`` with every module that offers a surrogate replaced by it, sharing all
    weights (the modules on the way are shallow copies); None when none offers one."""
    if _offers(model):
        return getattr(model, SURROGATE_METHOD)()
    replaced = {name: with_surrogates(child) for name, child in model.named_children()}
    replaced = {name: child for name, child in replaced.items() if child is not None}
    if not replaced:
        return None
    outer = copy.copy(model)
    outer._modules = {**model._modules, **replaced}
    return outer
