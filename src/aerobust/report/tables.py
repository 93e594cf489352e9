"""The paper's tables (1, 2 a/b, 3 a/b, 4) from our rows, laid out as the paper lays
them out, each value of ours followed by the paper's and the difference."""

from __future__ import annotations

from aerobust.report.blocks import Block, Paragraph, Table
from aerobust.report.load import Part, Row, index
from aerobust.report.numbers import (
    ATTACK_LABELS,
    diff,
    eps_label,
    fmt,
    ratio,
    sci,
    setting_label,
)

TRIPLE = ["ours", "paper", "diff"]


def _triple(row: Row) -> list[str]:
    """Ours, the paper's and ours minus the paper's, for one cell."""
    return [fmt(row.get("accuracy")), fmt(row.get("paper")),
            diff(row.get("accuracy"), row.get("paper"))]


def _numeric(header: list[str]) -> list[bool]:
    """Every column but the first (attack, or what a row measures) holds numbers."""
    return [i > 0 for i in range(len(header))]


def _not_run(part: Part, experiment: str) -> list[Block]:
    return [Paragraph(f"`{part.name}`: {part.missing(experiment)}.")]


def table1(part: Part) -> list[Block]:
    """Table 1: white-box accuracy of C and AE-C, with median L2 of the successful
    perturbations for the minimum-norm attacks."""
    rows = part.rows.get("table1")
    if rows is None:
        return _not_run(part, "table1")
    by = index(rows, "variant", "attack", "eps")
    header = ["Attack", "eps", *(f"C {h}" for h in TRIPLE), *(f"AE-C {h}" for h in TRIPLE),
              "median L2 C", "median L2 AE-C"]
    body = []
    for attack, eps in dict.fromkeys((r["attack"], r["eps"]) for r in rows):
        c, a = by.get(("C", attack, eps), {}), by.get(("AE-C", attack, eps), {})
        body.append([ATTACK_LABELS.get(attack, attack), eps_label(eps), *_triple(c),
                     *_triple(a), fmt(c.get("median_l2"), 3), fmt(a.get("median_l2"), 3)])
    params = {r["attack"]: r for r in rows if r.get("params")}
    notes = [f"{next(iter(params.values()), rows[0])['n']} test images"]
    if "cw" in params:
        cw = params["cw"]["params"]
        notes.append(f"CW on {params['cw']['n']} images, {cw['binary_steps']} x "
                     f"{cw['steps']} steps")
    if "pgd" in params:
        pgd = params["pgd"]["params"]
        notes.append(f"PGD {pgd['steps']} steps x {pgd['restarts']} restart(s)")
    if "deepfool" in params:
        notes.append(f"DeepFool {params['deepfool']['params']['steps']} steps")
    return [Paragraph(part.paper_note() + " Median L2: of the perturbations that turned a "
                      "correct prediction wrong (larger: harder to fool)."),
            Table(header, body, _numeric(header)),
            Paragraph("; ".join(notes) + ".")]


def table2(part: Part) -> list[Block]:
    """Table 2 (a) and (b): transfer accuracy, with the substitute's own white-box
    accuracy on the adversarials it crafted (`sub`)."""
    rows = part.rows.get("table2")
    if rows is None:
        return _not_run(part, "table2")
    by = index(rows, "substitute", "variant", "attack", "eps")
    header = ["Attack", "eps", *(f"C {h}" for h in TRIPLE), "C sub",
              *(f"AE-C {h}" for h in TRIPLE), "AE-C sub"]
    blocks: list[Block] = [Paragraph(part.paper_note() + " `sub`: the substitute's own "
                                     "white-box accuracy on the adversarials it crafted.")]
    titles = {"different": "**(a)** Substitute of another architecture.",
              "same": "**(b)** Substitute of the same architecture, trained from another seed."}
    for kind, title in titles.items():
        cells = dict.fromkeys((r["attack"], r["eps"]) for r in rows if r["substitute"] == kind)
        body = []
        for attack, eps in cells:
            line = [ATTACK_LABELS.get(attack, attack), eps_label(eps)]
            for variant in ("C", "AE-C"):
                r = by.get((kind, variant, attack, eps), {})
                line += [*_triple(r), fmt(r.get("substitute_accuracy"))]
            body.append(line)
        if body:
            blocks += [Paragraph(title), Table(header, body, _numeric(header))]
    first = rows[0]
    notes = [f"{first['n']} test images",
             f"substitutes trained on {first.get('substitute_labels', 'true')} labels"]
    pgd = next((r["params"] for r in rows if r["attack"] == "pgd" and r.get("params")), None)
    if pgd:
        notes.append(f"PGD {pgd['steps']} steps, {pgd.get('keep', 'last')} iterate transferred")
    return [*blocks, Paragraph("; ".join(notes) + ".")]


def table3(part: Part) -> list[Block]:
    """Table 3 (a) regularization (lambda) and (b) alternating (gamma), with the clean
    accuracy and reconstruction error each setting costs."""
    rows = part.rows.get("table3")
    if rows is None:
        return _not_run(part, "table3")
    blocks: list[Block] = [Paragraph(part.paper_note("mnist"))]
    for letter, method in (("a", "regularization"), ("b", "alternating")):
        mine = [r for r in rows if r["method"] == method]
        settings = list(dict.fromkeys(r["setting"] for r in mine))
        if not settings:
            continue
        by = index(mine, "setting", "attack", "eps")
        some = {r["setting"]: r for r in mine}
        header = ["Attack", "eps", *(f"{setting_label(s)} {h}" for s in settings
                                     for h in TRIPLE)]
        body = [[ATTACK_LABELS.get(attack, attack), eps_label(eps),
                 *(v for s in settings for v in _triple(by.get((s, attack, eps), {})))]
                for attack, eps in dict.fromkeys((r["attack"], r["eps"]) for r in mine)]
        body.append(["clean", "-", *(v for s in settings
                                     for v in (fmt(some[s].get("clean_accuracy")), "-", "-"))])
        body.append(["test MSE", "-", *(v for s in settings
                                        for v in (fmt(some[s].get("test_mse"), 5), "-", "-"))])
        blocks += [Paragraph(f"**({letter})** {method.capitalize()} method."),
                   Table(header, body, _numeric(header))]
    return [*blocks, Paragraph(f"{rows[0]['n']} test images.")]


def table4(part: Part) -> list[Block]:
    """Table 4: mean L1 norm of the input gradient; units differ from the paper's
    (unstated) ones, so the ratio AE-C / C is the comparable figure."""
    rows = part.rows.get("table4")
    if rows is None:
        return _not_run(part, "table4")
    by = index(rows, "variant", "target")
    labels = {"true": "d softmax_y / dx (true class; the paper's G)",
              "predicted": "d softmax_pred / dx (predicted class)", "loss": "d CE / dx (loss)"}
    header = ["gradient of", "C", "AE-C", "AE-C / C", "paper C", "paper AE-C",
              "paper AE-C / C"]
    body = []
    for target in dict.fromkeys(r["target"] for r in rows):
        c, a = by.get(("C", target), {}), by.get(("AE-C", target), {})
        gc, ga, pc, pa = (c.get("gradient_amplitude"), a.get("gradient_amplitude"),
                          c.get("paper"), a.get("paper"))
        body.append([labels.get(target, target), sci(gc), sci(ga), fmt(ratio(ga, gc)),
                     sci(pc), sci(pa), fmt(ratio(pa, pc))])
    first = rows[0]
    return [Paragraph(part.paper_note() + " The paper does not give its pixel range or "
                      "whether G sums or averages over pixels: compare the ratio AE-C / C."),
            Table(header, body, _numeric(header)),
            Paragraph(f"Mean over {first['n']} test images of the L1 norm over "
                      f"{first.get('input_dims', '?')} input values in [0, 1]; classifier "
                      f"{first.get('classifier', '?')}.")]
