"""Table 2: black-box transfer accuracy of C and AE-C under FGSM and PGD, adversarials
crafted on (a) a substitute of another architecture, (b) one of the same architecture
trained from another seed (for AE-C: an independently trained AE and classifier).

If AE-C's white-box gain (Table 1) came from masked gradients, transfer from a model
whose gradients are not masked would erase it. PGD transfers its final iterate
(``transfer_keep="last"``): the first fooling iterate, kept for white-box numbers, sits
barely over the substitute's boundary and transfers poorly.
"""

from __future__ import annotations

from aerobust.experiments import paper
from aerobust.experiments.recipes import Setup, attack, substitute, variant
from aerobust.experiments.spec import Cell

EXPERIMENT = "table2"
KINDS = ("different", "same")
VARIANTS = ("C", "AE-C")
ATTACKS = ("fgsm", "pgd")


def cells(setup: Setup) -> list[Cell]:
    c = setup.config
    out = []
    for seed in setup.seeds():
        for kind in KINDS:
            for name in VARIANTS:
                target = variant(setup, name, seed)
                sub = substitute(setup, kind, target, seed)
                for attack_name in ATTACKS:
                    for eps in c.eps:
                        crafted = attack(setup, attack_name, eps, seed,
                                         steps=c.masking_pgd_steps, keep=c.transfer_keep)
                        ref = paper.TABLE2.get((kind, setup.paper_dataset, attack_name, eps),
                                               {}).get(name)
                        out.append(Cell(
                            EXPERIMENT, {"substitute": kind, "variant": name,
                                         "attack": attack_name, "eps": eps, "seed": seed},
                            "transfer", target,
                            {"attack": crafted, "n": c.masking_n, "batch_size": c.batch_size},
                            {"paper": ref, "paper_dataset": setup.paper_dataset,
                             "substitute_labels": c.substitute_labels}, sub))
    return out
