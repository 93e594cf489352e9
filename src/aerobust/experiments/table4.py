"""Table 4: mean L1 norm of the input gradient of the softmax output (eq. 2) for C and
AE-C, LeNet5 on grey data and VGG16 on colour data.

Shrunken gradients are one way to mask them; the paper reads a lower amplitude with the
AE on MNIST as a partial masking effect and a higher one on CIFAR-10 as its absence.
"""

from __future__ import annotations

from aerobust.experiments import paper
from aerobust.experiments.recipes import Setup, replicates
from aerobust.experiments.spec import Cell
from aerobust.metrics import GRADIENT_TARGETS

EXPERIMENT = "table4"
VARIANTS = ("C", "AE-C")


def cells(setup: Setup) -> list[Cell]:
    c = setup.config
    out = []
    for seed, name, model in replicates(setup, VARIANTS):
        for target in GRADIENT_TARGETS:
            ref = (paper.TABLE4.get(setup.paper_dataset, {}).get(name)
                   if target == "true" else None)
            out.append(Cell(EXPERIMENT, {"variant": name, "target": target, "seed": seed},
                            "gradient", model,
                            {"target": target, "n": c.n_eval, "batch_size": c.batch_size},
                            {"paper": ref, "paper_dataset": setup.paper_dataset,
                             "classifier": c.classifier}))
    return out
