"""The paper's tables (1, 2 a/b, 3 a/b, 4) from our rows, laid out as the paper lays
them out: each value of ours (mean ± std over the seeds) followed by the paper's and the
difference, marked "≈" where the paper's value lies inside our 95% interval."""

from __future__ import annotations

from aerobust.report.blocks import Block, Paragraph, Table
from aerobust.report.load import Part, Row
from aerobust.report.numbers import ATTACK_LABELS, eps_label, fmt, ratio, sci, setting_label
from aerobust.report.seeds import (
    group,
    paired,
    seed_of,
    spread_note,
    summary,
    versus_paper,
)

TRIPLE = ["ours", "paper", "diff"]
DIFF_NOTE = ("`diff`: ours minus the paper's, \"≈\" where the paper's value lies inside our "
             "95% interval (a difference within our noise).")
PAIRED_NOTE = ("`AE-C minus C`: the paired difference on the same images and seeds with its 95% "
               "interval, \"*\" where the paired test finds it significant at 5%.")


def _triple(rows: list[Row], seeds: int) -> list[str]:
    """Ours (over the seeds), the paper's, and ours minus the paper's, for one cell."""
    if not rows:
        return ["-", "-", "-"]
    cell, paper = summary(rows), rows[0].get("paper")
    return [cell.text(seeds=seeds), fmt(paper), versus_paper(cell, paper)]


def _seeds(rows: list[Row]) -> int:
    return len({seed_of(r) for r in rows})


def _paired(first: list[Row], second: list[Row]) -> str:
    result = paired(first, second) if first and second else None
    return "-" if result is None else result.text()


def _numeric(header: list[str]) -> list[bool]:
    """Every column but the first (attack, or what a row measures) holds numbers."""
    return [i > 0 for i in range(len(header))]


def _not_run(part: Part, experiment: str) -> list[Block]:
    return [Paragraph(f"`{part.name}`: {part.missing(experiment)}.")]


def _median_l2(rows: list[Row]) -> str:
    return summary(rows, "median_l2").text(3) if rows else "-"


def table1(part: Part) -> list[Block]:
    """Table 1: white-box accuracy of C and AE-C, with median L2 of the successful
    perturbations for the minimum-norm attacks."""
    rows = part.rows.get("table1")
    if rows is None:
        return _not_run(part, "table1")
    by, seeds = group(rows, "variant", "attack", "eps"), _seeds(rows)
    header = ["Attack", "eps", *(f"C {h}" for h in TRIPLE), *(f"AE-C {h}" for h in TRIPLE),
              "AE-C minus C", "median L2 C", "median L2 AE-C"]
    body = []
    for attack, eps in dict.fromkeys((r["attack"], r["eps"]) for r in rows):
        c, a = by.get(("C", attack, eps), []), by.get(("AE-C", attack, eps), [])
        body.append([ATTACK_LABELS.get(attack, attack), eps_label(eps), *_triple(c, seeds),
                     *_triple(a, seeds), _paired(c, a), _median_l2(c), _median_l2(a)])
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
            Paragraph("; ".join(notes) + ". " + spread_note(rows) + " " + DIFF_NOTE + " "
                      + PAIRED_NOTE)]


def table2(part: Part) -> list[Block]:
    """Table 2 (a) and (b): transfer accuracy, with the substitute's own white-box
    accuracy on the adversarials it crafted (`sub`)."""
    rows = part.rows.get("table2")
    if rows is None:
        return _not_run(part, "table2")
    by, seeds = group(rows, "substitute", "variant", "attack", "eps"), _seeds(rows)
    header = ["Attack", "eps", *(f"C {h}" for h in TRIPLE), "C sub",
              *(f"AE-C {h}" for h in TRIPLE), "AE-C sub", "AE-C minus C"]
    blocks: list[Block] = [Paragraph(part.paper_note() + " `sub`: the substitute's own "
                                     "white-box accuracy on the adversarials it crafted.")]
    titles = {"different": "**(a)** Substitute of another architecture.",
              "same": "**(b)** Substitute of the same architecture, trained from another seed."}
    for kind, title in titles.items():
        cells = dict.fromkeys((r["attack"], r["eps"]) for r in rows if r["substitute"] == kind)
        body = []
        for attack, eps in cells:
            line = [ATTACK_LABELS.get(attack, attack), eps_label(eps)]
            pair = []
            for variant in ("C", "AE-C"):
                replicates = by.get((kind, variant, attack, eps), [])
                pair.append(replicates)
                line += [*_triple(replicates, seeds),
                         summary(replicates, "substitute_accuracy").text()
                         if replicates else "-"]
            body.append([*line, _paired(*pair)])
        if body:
            blocks += [Paragraph(title), Table(header, body, _numeric(header))]
    first = rows[0]
    notes = [f"{first['n']} test images",
             f"substitutes trained on {first.get('substitute_labels', 'true')} labels"]
    pgd = next((r["params"] for r in rows if r["attack"] == "pgd" and r.get("params")), None)
    if pgd:
        notes.append(f"PGD {pgd['steps']} steps, {pgd.get('keep', 'last')} iterate transferred")
    return [*blocks, Paragraph("; ".join(notes) + ". " + spread_note(rows) + " " + DIFF_NOTE
                               + " " + PAIRED_NOTE)]


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
        by = group(mine, "setting", "attack", "eps")
        some = group(mine, "setting", "attack")
        header = ["Attack", "eps", *(f"{setting_label(s)} {h}" for s in settings
                                     for h in TRIPLE)]
        body = [[ATTACK_LABELS.get(attack, attack), eps_label(eps),
                 *(v for s in settings
                   for v in _triple(by.get((s, attack, eps), []), _seeds(rows)))]
                for attack, eps in dict.fromkeys((r["attack"], r["eps"]) for r in mine)]
        # one (setting, attack)'s rows: every eps of it has the same clean accuracy per seed
        first = {s: next(v for (setting, _), v in some.items() if setting == s)
                 for s in settings}
        body.append(["clean", "-", *(v for s in settings
                                     for v in (summary(first[s], "clean_accuracy").text(),
                                               "-", "-"))])
        body.append(["test MSE", "-", *(v for s in settings for v in (
            summary(first[s], "test_mse").text(5), "-", "-"))])
        blocks += [Paragraph(f"**({letter})** {method.capitalize()} method."),
                   Table(header, body, _numeric(header))]
    return [*blocks, Paragraph(f"{rows[0]['n']} test images. " + spread_note(rows) + " "
                               + DIFF_NOTE)]


def table4(part: Part) -> list[Block]:
    """Table 4: mean L1 norm of the input gradient; units differ from the paper's
    (unstated) ones, so the ratio AE-C / C is the comparable figure."""
    rows = part.rows.get("table4")
    if rows is None:
        return _not_run(part, "table4")
    by = group(rows, "variant", "target")
    labels = {"true": "d softmax_y / dx (true class; the paper's G)",
              "predicted": "d softmax_pred / dx (predicted class)", "loss": "d CE / dx (loss)"}
    header = ["gradient of", "C", "AE-C", "AE-C / C", "paper C", "paper AE-C",
              "paper AE-C / C"]
    body = []
    for target in dict.fromkeys(r["target"] for r in rows):
        c, a = by.get(("C", target), []), by.get(("AE-C", target), [])
        gc, ga = (summary(x, "gradient_amplitude") for x in (c, a))
        ratios = [r for r in (ratio(y["gradient_amplitude"], x["gradient_amplitude"])
                              for x, y in zip(c, a, strict=False)) if r is not None]
        pc, pa = (c[0].get("paper") if c else None), (a[0].get("paper") if a else None)
        body.append([labels.get(target, target), _sci(gc), _sci(ga),
                     summary([{"r": r} for r in ratios], "r").text(),
                     sci(pc), sci(pa), fmt(ratio(pa, pc))])
    first = rows[0]
    return [Paragraph(part.paper_note() + " The paper does not give its pixel range or "
                      "whether G sums or averages over pixels: compare the ratio AE-C / C."),
            Table(header, body, _numeric(header)),
            Paragraph(f"Mean over {first['n']} test images of the L1 norm over "
                      f"{first.get('input_dims', '?')} input values in [0, 1]; classifier "
                      f"{first.get('classifier', '?')}. " + spread_note(rows)
                      + " The ratio is taken per seed, then summarised.")]


def _sci(cell) -> str:
    if cell.mean is None:
        return "-"
    return sci(cell.mean) if cell.n < 2 else f"{sci(cell.mean)} ± {sci(cell.std)}"
