"""Table 3: a classifier on the encoder's latent features, trained jointly with
reconstruction; FGSM and PGD accuracy as the reconstruction's weight grows, for the
regularization method (lambda) and the alternating method (gamma)."""

from __future__ import annotations

from aerobust.experiments import paper
from aerobust.experiments.recipes import LATENT_METHODS, Setup, attack, latent, latent_settings
from aerobust.experiments.spec import Cell, Model

EXPERIMENT = "table3"
ATTACKS = ("fgsm", "pgd")


def cells(setup: Setup) -> list[Cell]:
    c = setup.config
    out = []
    for seed in setup.seeds():
        for method, value in latent_settings(setup):
            setting = f"{LATENT_METHODS[method][1]}={value:g}"
            model = Model(latent(setup, method, value, seed))
            for attack_name in ATTACKS:
                for eps in c.latent_eps:
                    out.append(Cell(
                        EXPERIMENT, {"method": method, "setting": setting, "value": value,
                                     "attack": attack_name, "eps": eps, "seed": seed},
                        "attack", model,
                        {"attack": attack(setup, attack_name, eps, seed), "n": c.n_eval,
                         "batch_size": c.batch_size},
                        {"paper": paper.TABLE3.get((method, attack_name, eps), {}).get(setting)}))
    return out
