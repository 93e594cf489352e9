"""Fig. 2: the AE beside two gradient-masking defenses, softmax temperature (C+T) and
Guided Complement Entropy (C+GCE), white-box (top row) and black-box (bottom row),
FGSM and PGD, accuracy over an epsilon sweep.

A masking defense gains white-box accuracy and loses it under transfer; the paper's
point is that the AE keeps its gain in both rows. Reading: (AE-C)+T is the AE trained
alone (MSE) in front of the classifier trained with temperature, composed without
fine-tuning; black-box adversarials come from the same-architecture substitute of
Table 2(b), trained with plain CE (for the AE-C variants an AE-C substitute). Why:
docs/design.md#transfer-and-substitutes-table-2-fig-2.
"""

from __future__ import annotations

from aerobust.experiments.recipes import Setup, attack, replicates, substitute
from aerobust.experiments.spec import Cell

EXPERIMENT = "figure2"
VARIANTS = ("C", "AE-C", "C+T", "(AE-C)+T", "C+GCE", "(AE-C)+GCE")
BOXES = ("white", "black")
ATTACKS = ("fgsm", "pgd")


def cells(setup: Setup) -> list[Cell]:
    c = setup.config
    out = []
    for seed, name, target in replicates(setup, VARIANTS):
        sub = substitute(setup, "same", target, seed)
        for box in BOXES:
            for attack_name in ATTACKS:
                for eps in c.eps_sweep:
                    coords = {"box": box, "variant": name, "attack": attack_name, "eps": eps,
                              "seed": seed}
                    keep = c.transfer_keep if box == "black" else "first"
                    params = {"attack": attack(setup, attack_name, eps, seed,
                                               steps=c.masking_pgd_steps, keep=keep),
                              "n": c.masking_n, "batch_size": c.batch_size}
                    black = box == "black"
                    out.append(Cell(EXPERIMENT, coords, "transfer" if black else "attack",
                                    target, params, substitute=sub if black else None))
    return out
