"""Table 1: white-box accuracy of C and AE-C under FGSM, PGD, CW (confidence 0) and
DeepFool, every gradient taken through the whole AE-C."""

from __future__ import annotations

from aerobust.experiments import paper
from aerobust.experiments.recipes import Setup, attack, replicates
from aerobust.experiments.spec import Cell

EXPERIMENT = "table1"
VARIANTS = ("C", "AE-C")
MINIMUM_NORM = ("cw", "deepfool")


def rows_of(setup: Setup) -> list[tuple[str, float | None]]:
    """(attack, eps in 0-255 units) in the paper's row order; None for minimum-norm ones."""
    eps = setup.config.eps
    return ([("clean", 0.0)] + [("fgsm", e) for e in eps] + [("pgd", e) for e in eps]
            + [(name, None) for name in MINIMUM_NORM])


def cells(setup: Setup) -> list[Cell]:
    c = setup.config
    out = []
    for seed, name, model in replicates(setup, VARIANTS):
        for attack_name, eps in rows_of(setup):
            if attack_name == "cw" and seed >= c.seed + c.cw_seeds:
                continue
            ref = paper.TABLE1.get((setup.paper_dataset, attack_name, eps), {}).get(name)
            params: dict = {"n": c.n_cw if attack_name == "cw" else c.n_eval,
                            "batch_size": c.batch_size}
            if attack_name != "clean":
                params["attack"] = attack(setup, attack_name, eps, seed)
            out.append(Cell(EXPERIMENT, {"variant": name, "attack": attack_name, "eps": eps,
                                         "seed": seed},
                            "clean" if attack_name == "clean" else "attack", model, params,
                            {"paper": ref, "paper_dataset": setup.paper_dataset}))
    return out
