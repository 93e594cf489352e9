"""Table 3: a classifier on the encoder's latent features, trained jointly with
reconstruction; FGSM and PGD accuracy as the reconstruction's weight grows, for the
regularization method (lambda) and the alternating method (gamma)."""

from __future__ import annotations

from aerobust.experiments import paper
from aerobust.experiments.recipes import Setup, attack
from aerobust.experiments.spec import Cell, Model, Net

EXPERIMENT = "table3"
ATTACKS = ("fgsm", "pgd")
# method -> (the training option it sets, the symbol the paper uses)
METHODS = {"regularization": ("lam", "lambda"), "alternating": ("gamma", "gamma")}


def settings(setup: Setup) -> list[tuple[str, float]]:
    """(method, value) cells in the paper's column order."""
    c = setup.config
    return ([("regularization", v) for v in c.lambdas]
            + [("alternating", v) for v in c.gammas])


def latent(setup: Setup, method: str, value: float, seed: int) -> Net:
    """The latent classifier of one setting. lambda = 0 and gamma = 0 are both plain CE
    training of the same network (as the paper's equal first columns show): one net."""
    options = {} if value == 0 else {
        "method": method,
        METHODS[method][0]: int(value) if method == "alternating" else float(value)}
    return Net("latent-classifier", seed, setup.config.classifier_epochs, options)


def cells(setup: Setup) -> list[Cell]:
    c = setup.config
    out = []
    for seed in setup.seeds():
        for method, value in settings(setup):
            setting = f"{METHODS[method][1]}={value:g}"
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
