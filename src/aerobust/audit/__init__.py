"""Audit a defense for gradient masking: probes, an attack ladder, sanity checks, a
per-point ledger and a verdict with its evidence (``audit``).

``aerobust.audit`` is this package and also the function, so that the call a newcomer
types, ``aerobust.audit(model, x, y, eps=...)``, works, while every name stays where it
was (``aerobust.audit.audit``, ``aerobust.audit.Audit``, ``BUDGETS``, the submodules).
A module cannot be called; its class can be swapped for a ``ModuleType`` subclass
that can (the documented way to customise a module's behaviour, Python data model,
"Customizing module attribute access"). That keeps one object under one name: a
function named ``audit`` that shadowed the package would break ``import
aerobust.audit.core`` and every ``from aerobust.audit import ...``.
"""

import inspect
import sys
import types
from typing import Any

from aerobust.audit.core import VERDICTS, Audit, Check, audit
from aerobust.audit.ladder import BUDGETS, Budget
from aerobust.audit.probes import Probe

__all__ = ["BUDGETS", "VERDICTS", "Audit", "Budget", "Check", "Probe", "audit"]


class _CallableModule(types.ModuleType):
    """This package, callable as its ``audit`` function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Audit:
        return self.audit(*args, **kwargs)


__signature__ = inspect.signature(audit)  # what help() and inspect show for the call
sys.modules[__name__].__class__ = _CallableModule
