"""Table 2: black-box transfer accuracy of C and AE-C under FGSM and PGD, adversarials
crafted on (a) a substitute of another architecture, (b) one of the same architecture
trained from another seed (for AE-C: an independently trained AE and classifier).

If AE-C's white-box gain (Table 1) came from masked gradients, transfer from a model
whose gradients are not masked would erase it. PGD transfers its final iterate
(``config.transfer_keep="last"``): the first fooling iterate, kept for white-box
numbers, sits barely over the substitute's boundary and transfers poorly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from aerobust import attacks
from aerobust.attacks import Evaluation, craft, relabelled, score
from aerobust.experiments import paper
from aerobust.experiments.common import Cells, Row, Workspace, diff, fmt, percent
from aerobust.metrics import predict
from aerobust.models import AEClassifier

EXPERIMENT = "table2"
PAPER_EPS = {"digits": (20, 80), "mnist": (20, 80), "cifar": (5, 10)}
# Table 2(a): "LeNet-like" for MNIST, ResNet-110 for CIFAR-10 (DESIGN.md)
SUBSTITUTE_ARCH = {"digits": "lenet-substitute", "mnist": "lenet-substitute",
                   "cifar": "resnet110"}
# the quick preset: AE-C PGD on a CPU costs ~1.5 s per step per 360 digits images
MASKING_N = {"digits": 100}
MASKING_PGD_STEPS = {"digits": 10}
KINDS = ("different", "same")
VARIANTS = ("C", "AE-C")
ATTACKS = ("fgsm", "pgd")

Models = dict[str, tuple[nn.Module, dict[str, str]]]


def masking_n(ws: Workspace) -> int | None:
    """Test images for the masking checks: config, else the family's, else n_eval."""
    return ws.config.masking_n or MASKING_N.get(ws.family, ws.config.n_eval)


def masking_pgd_steps(ws: Workspace) -> int:
    return ws.config.masking_pgd_steps or MASKING_PGD_STEPS.get(ws.family, ws.config.pgd_steps)


def make_attack(ws: Workspace, name: str, eps: float, keep: str = "first") -> attacks.Attack:
    """FGSM, or PGD with the masking checks' steps; ``keep`` picks PGD's kept iterate."""
    if name == "fgsm":
        return attacks.get("fgsm", eps=eps / 255)
    return attacks.get("pgd", eps=eps / 255, steps=masking_pgd_steps(ws),
                       restarts=ws.config.pgd_restarts, seed=ws.config.seed, keep=keep)


def targets(ws: Workspace) -> Models:
    """C and AE-C (the AE trained alone, composed without fine-tuning), with run names."""
    clf_run, ae_run = ws.train(ws.classifier_arch), ws.train("conv-ae")
    clf = clf_run.load(ws.device)
    return {"C": (clf, {"classifier_run": clf_run.path.name}),
            "AE-C": (AEClassifier(ae_run.load(ws.device), clf).eval(),
                     {"classifier_run": clf_run.path.name,
                      "autoencoder_run": ae_run.path.name})}


def substitute(ws: Workspace, kind: str, variant: str, target: nn.Module,
               target_runs: dict[str, str]) -> tuple[nn.Module, dict[str, str]]:
    """A freshly loaded substitute for ``target``: never the same object or weights.

    ``kind="different"``: SUBSTITUTE_ARCH; ``"same"``: the target's classifier
    architecture. Every substitute trains from ``seed + 1`` with plain CE (for
    ``substitute_epochs`` epochs if set); the AE-C substitute puts an AE trained from
    ``seed + 1`` in front. With
    ``substitute_labels="target"`` the classifier learns the target's predictions.
    """
    arch = SUBSTITUTE_ARCH[ws.family] if kind == "different" else ws.classifier_arch
    seed = ws.config.seed + 1
    data = ws.dataset
    if ws.config.substitute_labels == "target":
        labels = predict(target, ws.dataset.x_train, batch_size=ws.config.batch_size)
        data = relabelled(ws.dataset, labels, "+".join(sorted(target_runs.values())))
    epochs = {} if ws.config.substitute_epochs is None else {
        "epochs": ws.config.substitute_epochs}
    clf_run = ws.train(arch, seed, dataset=data, **epochs)
    model = clf_run.load(ws.device)
    runs = {"substitute_classifier_run": clf_run.path.name}
    if variant != "C":
        ae_run = ws.train("conv-ae", seed, **epochs)
        model = AEClassifier(ae_run.load(ws.device), model).eval()
        runs["substitute_autoencoder_run"] = ae_run.path.name
    return model, runs


class Crafter:
    """Adversarials per (substitute, attack, eps), crafted once per process and shared by
    every target that substitute attacks (crafting is the expensive half)."""

    def __init__(self, ws: Workspace, n: int | None) -> None:
        self.ws = ws
        self.x, self.y = ws.eval_split(n)
        self.done: dict[tuple[Any, ...], Evaluation] = {}

    def transfer(self, sub: nn.Module, sub_runs: dict[str, str], target: nn.Module,
                 name: str, eps: float) -> dict[str, Any]:
        key = (tuple(sorted(sub_runs.values())), name, eps)
        if key not in self.done:
            attack = make_attack(self.ws, name, eps, keep=self.ws.config.transfer_keep)
            self.done[key] = craft(sub, self.x, self.y, attack,
                                   batch_size=self.ws.config.batch_size, progress=self.ws.progress)
        result = score(target, self.done[key], self.x, self.y, batch_size=self.ws.config.batch_size)
        row = result.to_dict()
        for k in ("accuracy", "clean_accuracy", "substitute_accuracy",
                  "substitute_clean_accuracy"):
            row[k] = percent(row[k])
        return {**row, **sub_runs}


def cell_count(ws: Workspace) -> int:
    return len(KINDS) * len(VARIANTS) * len(ATTACKS) * len(ws.config.eps or PAPER_EPS[ws.family])


def run(ws: Workspace, out_dir: Path) -> list[Row]:
    cells = Cells(out_dir, EXPERIMENT, ws)
    eps_list = ws.config.eps or PAPER_EPS[ws.family]
    tgts = targets(ws)
    crafter = Crafter(ws, masking_n(ws))
    rows = []
    for kind in KINDS:
        for variant in VARIANTS:
            target, target_runs = tgts[variant]
            sub, sub_runs = substitute(ws, kind, variant, target, target_runs)
            for name in ATTACKS:
                for eps in eps_list:
                    key = {"substitute": kind, "variant": variant, "attack": name, "eps": eps}
                    ref = paper.TABLE2.get((kind, ws.paper_dataset, name, eps), {}).get(variant)

                    def compute(target: nn.Module = target, sub: nn.Module = sub,
                                sub_runs: dict[str, str] = sub_runs, name: str = name,
                                eps: float = eps, ref: float | None = ref,
                                target_runs: dict[str, str] = target_runs) -> Row:
                        row = crafter.transfer(sub, sub_runs, target, name, eps)
                        return {**row, **target_runs, "paper": ref,
                                "paper_dataset": ws.paper_dataset,
                                "substitute_labels": ws.config.substitute_labels}

                    rows.append(cells.run(key, compute))
    return rows


def markdown(rows: list[Row]) -> str:
    """Laid out like the paper's Table 2 (a) and (b): ours, the paper's, the difference,
    and the substitute's own white-box accuracy on the adversarials it crafted."""
    if not rows:
        return ""
    first = rows[0]
    by = {(r["substitute"], r["variant"], r["attack"], r["eps"]): r for r in rows}
    titles = {"different": "(a) substitute of another architecture",
              "same": "(b) substitute of the same architecture, trained from another seed"}
    lines = [f"### Table 2: black-box (transfer) accuracy (%) on `{first['dataset']}`", "",
             f"Paper columns: the paper's {first['paper_dataset'].upper()} values. "
             "`sub`: the substitute's own white-box accuracy on its adversarials.", ""]
    for kind in KINDS:
        order = list(dict.fromkeys((r["attack"], r["eps"]) for r in rows
                                   if r["substitute"] == kind))
        if not order:
            continue
        c0 = by[(kind, "C", *order[0])]
        a0 = by.get((kind, "AE-C", *order[0]), {})
        subs = [c0.get("substitute_classifier_run"), a0.get("substitute_autoencoder_run")]
        lines += [f"#### {titles[kind]}", "",
                  "Substitute runs: " + ", ".join(f"`{s}`" for s in subs if s), "",
                  "| Attack | eps | C | paper | diff | sub | AE-C | paper | diff | sub |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for attack, eps in order:
            cells = [attack.upper(), f"{eps:g}"]
            for variant in VARIANTS:
                r = by.get((kind, variant, attack, eps), {})
                cells += [fmt(r.get("accuracy")), fmt(r.get("paper")),
                          diff(r.get("accuracy"), r.get("paper")),
                          fmt(r.get("substitute_accuracy"))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    pgd = next((r["params"] for r in rows if r["attack"] == "pgd"), None)
    clean = {v: next((r["clean_accuracy"] for r in rows if r["variant"] == v), None)
             for v in VARIANTS}
    notes = [f"{first['n']} test images; clean accuracy C {fmt(clean['C'])}, "
             f"AE-C {fmt(clean['AE-C'])}",
             f"substitutes trained on {first['substitute_labels']} labels from seed + 1"]
    if pgd:
        notes.append(f"PGD {pgd['steps']} steps x {pgd['restarts']} restart(s), "
                     f"{pgd['keep']} iterate transferred")
    return "\n".join(lines) + "\n" + "; ".join(notes) + ".\n"
