"""Table 1: white-box accuracy of C and AE-C under FGSM, PGD, CW (confidence 0) and
DeepFool, every gradient taken through the whole AE-C."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from aerobust import attacks
from aerobust.experiments import paper
from aerobust.experiments.common import Cells, Row, Workspace, diff, fmt, percent
from aerobust.metrics import classifier_scores

EXPERIMENT = "table1"
PAPER_EPS = {"digits": (20, 80), "mnist": (20, 80), "cifar": (5, 10)}
VARIANTS = ("C", "AE-C")


def plan(ws: Workspace) -> list[tuple[str, float | None]]:
    """(attack, eps in 0-255 units) in the paper's row order; None for minimum-norm ones."""
    eps = ws.config.eps or PAPER_EPS[ws.family]
    return ([("clean", 0)] + [("fgsm", e) for e in eps] + [("pgd", e) for e in eps]
            + [("cw", None), ("deepfool", None)])


def make_attack(ws: Workspace, name: str, eps: float | None) -> attacks.Attack:
    c = ws.config
    if name == "fgsm":
        return attacks.get("fgsm", eps=eps / 255)
    if name == "pgd":
        return attacks.get("pgd", eps=eps / 255, steps=c.pgd_steps, restarts=c.pgd_restarts,
                           seed=c.seed)
    if name == "cw":
        binary, steps = ws.cw_settings
        return attacks.get("cw", confidence=0.0, steps=steps, binary_steps=binary)
    return attacks.get("deepfool", steps=c.deepfool_steps)


def measure(ws: Workspace, model: nn.Module, name: str, eps: float | None) -> dict[str, Any]:
    """One cell: accuracy in percent, with norms and cost for attacks."""
    n = ws.config.n_cw if name == "cw" else ws.config.n_eval
    x, y = ws.eval_split(n)
    if name == "clean":
        acc, _ = classifier_scores(model, x, y)
        return {"accuracy": percent(acc), "n": len(x)}
    ev = attacks.evaluate(model, x, y, make_attack(ws, name, eps),
                          batch_size=ws.config.batch_size, progress=ws.progress)
    return {"accuracy": percent(ev.robust_accuracy), "clean_accuracy": percent(ev.clean_accuracy),
            "median_l2": ev.median_l2, "mean_l2": ev.mean_l2, "median_linf": ev.median_linf,
            "n": ev.n, "seconds": ev.seconds, "images_per_second": ev.images_per_second,
            "forwards": ev.forwards, "backwards": ev.backwards, "params": ev.params}


def cell_count(ws: Workspace) -> int:
    return len(VARIANTS) * len(plan(ws))


def run(ws: Workspace, out_dir: Path) -> list[Row]:
    cells = Cells(out_dir, EXPERIMENT, ws)
    clf_run = ws.train(ws.classifier_arch)
    ae_run = ws.train("conv-ae")
    clf = clf_run.load(ws.device)
    models = {"C": clf, "AE-C": ws.ae_c(clf)}
    rows = []
    for variant in VARIANTS:
        for name, eps in plan(ws):
            key = {"variant": variant, "attack": name, "eps": eps}
            ref = paper.TABLE1.get((ws.paper_dataset, name, eps if name not in ("cw", "deepfool")
                                    else None), {}).get(variant)

            def compute(variant: str = variant, name: str = name,
                        eps: float | None = eps, ref: float | None = ref) -> Row:
                row = measure(ws, models[variant], name, eps)
                row.update(paper=ref, paper_dataset=ws.paper_dataset,
                           classifier_run=clf_run.path.name,
                           autoencoder_run=ae_run.path.name if variant == "AE-C" else None)
                return row

            rows.append(cells.run(key, compute))
    return rows


def markdown(rows: list[Row]) -> str:
    """Laid out like the paper's Table 1: ours, the paper's value and the difference."""
    if not rows:
        return ""
    first = rows[0]
    by = {(r["variant"], r["attack"], r["eps"]): r for r in rows}
    order = list(dict.fromkeys((r["attack"], r["eps"]) for r in rows))
    lines = [
        f"### Table 1: white-box accuracy (%) on `{first['dataset']}`",
        "",
        f"Paper columns: the paper's {first['paper_dataset'].upper()} values. "
        "Median L2: of the perturbations that turned a correct prediction wrong.",
        "",
        "| Attack | eps | C | paper | diff | AE-C | paper | diff | median L2 C | median L2 AE-C |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    label = {"clean": "clean", "fgsm": "FGSM", "pgd": "PGD", "cw": "CW (c=0)",
             "deepfool": "DeepFool"}
    for attack, eps in order:
        c, a = by.get(("C", attack, eps), {}), by.get(("AE-C", attack, eps), {})
        eps_s = "-" if eps is None else f"{eps:g}"
        cells = [label[attack], eps_s]
        for r in (c, a):
            cells += [fmt(r.get("accuracy")), fmt(r.get("paper")),
                      diff(r.get("accuracy"), r.get("paper"))]
        cells += [fmt(c.get("median_l2"), 3), fmt(a.get("median_l2"), 3)]
        lines.append("| " + " | ".join(cells) + " |")
    params = {r["attack"]: r for r in rows if "params" in r}
    n_main = params["fgsm"]["n"] if "fgsm" in params else first["n"]
    notes = [f"{n_main} test images"]
    if "cw" in params:
        cw = params["cw"]["params"]
        notes.append(f"CW on {params['cw']['n']} images, {cw['binary_steps']} x {cw['steps']} "
                     "steps")
    if "pgd" in params:
        pgd = params["pgd"]["params"]
        notes.append(f"PGD {pgd['steps']} steps x {pgd['restarts']} restart(s)")
    if "deepfool" in params:
        df = params["deepfool"]["params"]
        notes.append(f"DeepFool {df['steps']} steps, overshoot {df['overshoot']}")
    lines += ["", "; ".join(notes) + "."]
    return "\n".join(lines) + "\n"
