"""The paper, audited: the attack-ladder audit (``aerobust.audit``) of every model the
paper's robustness claims rest on, at the paper's eps values.

C and AE-C (Table 1's claim), the temperature and GCE models of Fig. 2 (the paper's
examples of gradient masking, with and without the AE) and advC / AE-advC of Fig. 4.
All are audited on the same first ``audit_n`` test images, so two models can be
compared point by point (the report pairs them with McNemar's test). C and AE-C are also
audited in L2 at ``audit_l2_eps`` (the [0,1] pixel scale), radii around the median L2 of
the paper's minimum-norm attacks, CW and DeepFool.
"""

from __future__ import annotations

from aerobust.experiments.recipes import VARIANTS, Setup, replicates
from aerobust.experiments.spec import Cell

EXPERIMENT = "audit"
L2_VARIANTS = ("C", "AE-C")  # Table 1's models, whose CW and DeepFool are L2 attacks


def cells(setup: Setup) -> list[Cell]:
    """Linf cells (eps in 0-255 units, no ``norm`` key, as before) and, for C and AE-C,
    L2 cells (``norm: "L2"``, eps in [0,1] units)."""
    c = setup.config
    out = []
    for seed, name, model in replicates(setup, tuple(VARIANTS), c.audit_seeds):
        radii = [("Linf", eps) for eps in c.eps]
        radii += [("L2", eps) for eps in c.audit_l2_eps] * (name in L2_VARIANTS)
        for norm, eps in radii:
            ball = {} if norm == "Linf" else {"norm": norm}
            out.append(Cell(EXPERIMENT, {"variant": name, **ball, "eps": eps,
                                         "budget": c.audit_budget, "seed": seed},
                            "audit", model,
                            {"eps": eps, **ball, "budget": c.audit_budget, "seed": seed,
                             "n": c.audit_n, "batch_size": c.batch_size}))
    return out
