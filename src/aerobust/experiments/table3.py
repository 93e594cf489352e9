"""Table 3: a classifier on the encoder's latent features, trained jointly with
reconstruction; FGSM and PGD accuracy as the reconstruction's weight grows, for the
regularization method (lambda) and the alternating method (gamma)."""

from __future__ import annotations

from pathlib import Path

from aerobust import attacks
from aerobust.experiments import paper
from aerobust.experiments.common import Cells, Row, Workspace, diff, fmt, percent
from aerobust.experiments.table1 import make_attack

EXPERIMENT = "table3"
PAPER_EPS = (20, 50)
ATTACKS = ("fgsm", "pgd")
# method -> (the spec field it sets, the symbol the paper uses)
METHODS = {"regularization": ("lam", "lambda"), "alternating": ("gamma", "gamma")}


def settings(ws: Workspace) -> list[tuple[str, float]]:
    """(method, value) cells in the paper's column order."""
    return ([("regularization", v) for v in ws.config.lambdas]
            + [("alternating", v) for v in ws.config.gammas])


def train(ws: Workspace, method: str, value: float):
    """The latent classifier for one setting. lambda = 0 and gamma = 0 are both plain
    CE training of the same network (as the paper's equal first columns show), so
    both share one run."""
    if value == 0:
        return ws.train("latent-classifier")
    field = METHODS[method][0]
    return ws.train("latent-classifier", method=method,
                    **{field: int(value) if field == "gamma" else float(value)})


def cell_count(ws: Workspace) -> int:
    return len(settings(ws)) * len(ATTACKS) * len(ws.config.eps or PAPER_EPS)


def run(ws: Workspace, out_dir: Path) -> list[Row]:
    cells = Cells(out_dir, EXPERIMENT, ws)
    eps_list = ws.config.eps or PAPER_EPS
    x, y = ws.eval_split(ws.config.n_eval)
    rows = []
    for method, value in settings(ws):
        symbol = METHODS[method][1]
        setting = f"{symbol}={value:g}"
        trained = train(ws, method, value)
        model = trained.load(ws.device)
        for name in ATTACKS:
            for eps in eps_list:
                key = {"method": method, "setting": setting, "value": value, "attack": name,
                       "eps": eps}
                ref = paper.TABLE3.get((method, name, eps), {}).get(setting)

                def compute(name: str = name, eps: float = eps, ref: float | None = ref,
                            trained=trained, model=model) -> Row:
                    ev = attacks.evaluate(model, x, y, make_attack(ws, name, eps),
                                          batch_size=ws.config.batch_size,
                                          progress=ws.progress)
                    return {"accuracy": percent(ev.robust_accuracy),
                            "clean_accuracy": percent(ev.clean_accuracy),
                            "test_mse": trained.metrics.get("test_mse"),
                            "median_linf": ev.median_linf, "n": ev.n, "seconds": ev.seconds,
                            "params": ev.params, "paper": ref, "run": trained.path.name}

                rows.append(cells.run(key, compute))
    return rows


def markdown(rows: list[Row]) -> str:
    """Table 3 (a) regularization and (b) alternating: ours, the paper's, the difference."""
    if not rows:
        return ""
    lines = [f"### Table 3: latent classifier accuracy (%) on `{rows[0]['dataset']}`", "",
             "Paper columns: the paper's MNIST values. Clean accuracy and the decoder's test "
             "MSE show what each setting costs.", ""]
    for letter, method in (("a", "regularization"), ("b", "alternating")):
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        columns = list(dict.fromkeys(r["setting"] for r in mine))
        lines += [f"({letter}) {method} method", "",
                  "| Attack | eps | " + " | ".join(f"{c} | paper | diff" for c in columns)
                  + " |",
                  "| --- | --- |" + " ---: | ---: | ---: |" * len(columns)]
        by = {(r["attack"], r["eps"], r["setting"]): r for r in mine}
        clean = {r["setting"]: r for r in mine}
        for attack, eps in dict.fromkeys((r["attack"], r["eps"]) for r in mine):
            cells = [attack.upper(), f"{eps:g}"]
            for c in columns:
                r = by.get((attack, eps, c), {})
                cells += [fmt(r.get("accuracy")), fmt(r.get("paper")),
                          diff(r.get("accuracy"), r.get("paper"))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("| clean | - | " + " | ".join(
            f"{fmt(clean[c].get('clean_accuracy'))} | - | -" for c in columns) + " |")
        lines.append("| test MSE | - | " + " | ".join(
            f"{fmt(clean[c].get('test_mse'), 5)} | - | -" for c in columns) + " |")
        lines.append("")
    first = rows[0]
    lines.append(f"{first['n']} test images; PGD {first['config']['pgd_steps']} steps.")
    return "\n".join(lines) + "\n"
