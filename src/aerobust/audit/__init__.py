"""Audit a defense for gradient masking: probes, an attack ladder, sanity checks, a
per-point ledger and a verdict with its evidence (``audit``)."""

from aerobust.audit.core import VERDICTS, Audit, Check, audit
from aerobust.audit.ladder import BUDGETS, Budget
from aerobust.audit.probes import Probe

__all__ = ["BUDGETS", "VERDICTS", "Audit", "Budget", "Check", "Probe", "audit"]
