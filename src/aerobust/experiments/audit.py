"""The paper, audited: the attack-ladder audit (``aerobust.audit``) of every model the
paper's robustness claims rest on, at the paper's eps values.

C and AE-C (Table 1's claim), the temperature and GCE models of Fig. 2 (the paper's
examples of gradient masking, with and without the AE) and advC / AE-advC of Fig. 4.
All are audited on the same first ``audit_n`` test images, so two models can be
compared point by point (the report pairs them with McNemar's test).
"""

from __future__ import annotations

from aerobust.experiments.recipes import VARIANTS, Setup, replicates
from aerobust.experiments.spec import Cell

EXPERIMENT = "audit"


def cells(setup: Setup) -> list[Cell]:
    c = setup.config
    return [Cell(EXPERIMENT, {"variant": name, "eps": eps, "budget": c.audit_budget,
                              "seed": seed},
                 "audit", model,
                 {"eps": eps, "budget": c.audit_budget, "seed": seed, "n": c.audit_n,
                  "batch_size": c.batch_size})
            for seed, name, model in replicates(setup, tuple(VARIANTS), c.audit_seeds)
            for eps in c.eps]
