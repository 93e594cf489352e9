"""Figure 4: the autoencoder combined with PGD adversarial training. Accuracy against an
eps sweep for C and AE-C (panel a) and for the adversarially trained advC and AE-advC
(panel b); the paper's (a, b) are MNIST and (c, d) the same on CIFAR-10."""

from __future__ import annotations

from aerobust.experiments.recipes import Setup, attack, replicates
from aerobust.experiments.spec import Cell

EXPERIMENT = "figure4"
VARIANTS = ("C", "AE-C", "advC", "AE-advC")


def cells(setup: Setup) -> list[Cell]:
    c = setup.config
    return [Cell(EXPERIMENT, {"variant": name, "attack": c.sweep_attack, "eps": eps,
                              "seed": seed},
                 "attack", model,
                 {"attack": attack(setup, c.sweep_attack, eps, seed), "n": c.n_eval,
                  "batch_size": c.batch_size},
                 {"adversarial_training": model.classifier.options.get("adversarial")})
            for seed, name, model in replicates(setup, VARIANTS) for eps in c.eps_sweep]
