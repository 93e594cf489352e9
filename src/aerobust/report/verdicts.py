"""One verdict per claim of the paper, computed from our rows with their noise in view:
does our run agree, and by what figures. The words are fixed ("agrees", "disagrees",
"mixed", "inconclusive", "not run") so a reader can scan them; the figures say how far.

A claim that a difference has a sign is judged over every comparable cell by a paired
test on the same images and seeds (``report.seeds.paired``): "agrees" when the
difference is significantly in the claimed direction in some cells and significantly
against it in none, "disagrees" when against it in some and with it in none, "mixed"
when both, "inconclusive" when no cell's difference stands out of the noise. The
paper's values are compared with our 95% intervals cell by cell."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aerobust.report.load import PAPER_NAMES, Part, Row
from aerobust.report.numbers import (
    ATTACK_LABELS,
    GAMMA,
    LAMBDA,
    eps_label,
    fmt,
    mean,
    ratio,
    sci,
    setting_label,
    signed,
)
from aerobust.report.seeds import HIGHER, LOWER, Paired, group, paired, seed_of, summary

AGREES, DISAGREES, MIXED, NOT_RUN, NO_DATA = "agrees", "disagrees", "mixed", "not run", "no data"
INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Verdict:
    claim: str
    status: str
    text: str


def _status(results: Sequence[Paired]) -> str:
    if not results:
        return NO_DATA
    higher = sum(r.direction == HIGHER for r in results)
    lower = sum(r.direction == LOWER for r in results)
    if higher and lower:
        return MIXED
    return AGREES if higher else DISAGREES if lower else INCONCLUSIVE


def _tally(results: Sequence[Paired], cells: str) -> str:
    """'above in 4 of 6 attack rows, below in 0, within noise in 2; mean +3.20 points'."""
    higher = sum(r.direction == HIGHER for r in results)
    lower = sum(r.direction == LOWER for r in results)
    return (f"above in {higher} of {len(results)} {cells}, below in {lower}, within noise "
            f"in {len(results) - higher - lower}; mean {signed(mean(r.diff for r in results))}"
            " points")


def _pairs(rows: list[Row], first: str, second: str, *keys: str,
           ) -> list[tuple[tuple, list[Row], list[Row]]]:
    """(cell, first variant's replicates, second's) for every cell both variants have."""
    by = group(rows, "variant", *keys)
    return [(cell, reps, by[(second, *cell)]) for (variant, *cell), reps in by.items()
            if variant == first and (second, *cell) in by]


def _compared(pairs: list[tuple[tuple, list[Row], list[Row]]]) -> list[Paired]:
    return [r for _, a, b in pairs if (r := paired(a, b)) is not None]


def _paper_check(pairs: list[tuple[tuple, list[Row], list[Row]]], label) -> str:
    """Per model and cell, is the paper's value inside our 95% interval; the cells where
    it is not, with how far outside (points beyond the interval's edge)."""
    inside, outside = 0, []
    for cell, *both in pairs:
        for variant, reps in zip(("C", "AE-C"), both, strict=True):
            published = reps[0].get("paper")
            if published is None:
                continue
            beyond = summary(reps).beyond(published)
            if beyond is None:
                continue
            if beyond == 0:
                inside += 1
            else:
                outside.append(f"{label(cell)} {variant} {signed(-beyond, 1)}")
    total = inside + len(outside)
    if not total:
        return "no published numbers for these cells"
    text = f"the paper's value inside our 95% interval in {inside} of {total} cells"
    if outside:
        text += "; ours beyond it (points past the interval's edge): " + ", ".join(outside)
    return text


def _attack_label(cell: tuple) -> str:
    attack, eps = cell[-2], cell[-1]
    return f"{ATTACK_LABELS.get(attack, attack)} {eps_label(eps)}".replace(" -", "")


def white_box(rows: list[Row], paper_dataset: str) -> tuple[str, str]:
    """Claim (1), Table 1: AE-C keeps more accuracy than C under every white-box attack,
    and minimum-norm attacks need larger perturbations to fool it."""
    pairs = [p for p in _pairs(rows, "C", "AE-C", "attack", "eps") if p[0][0] != "clean"]
    results = _compared(pairs)
    text = f"AE-C vs C: {_tally(results, 'attack rows')}."
    norms = [(ATTACK_LABELS[cell[0]], summary(c, "median_l2").mean,
              summary(a, "median_l2").mean) for cell, c, a in pairs
             if cell[0] in ("cw", "deepfool")]
    norms = [(name, c, a) for name, c, a in norms if c is not None and a is not None]
    if norms:
        larger = sum(a > c for _, c, a in norms)
        text += (" Median L2 to fool: " + "; ".join(f"{name} C {fmt(c, 3)}, AE-C {fmt(a, 3)}"
                                                     for name, c, a in norms)
                 + f" (larger with the AE in {larger} of {len(norms)}).")
    name = PAPER_NAMES.get(paper_dataset, paper_dataset)
    return _status(results), text + f" Paper ({name}): {_paper_check(pairs, _attack_label)}."


def black_box(rows: list[Row], paper_dataset: str) -> tuple[str, str]:
    """Claim (2), Table 2: the gain survives transfer from a substitute."""
    pairs = _pairs(rows, "C", "AE-C", "substitute", "attack", "eps")
    results = _compared(pairs)
    per_kind = []
    for letter, kind in (("a", "different"), ("b", "same")):
        kind_results = _compared([p for p in pairs if p[0][0] == kind])
        if kind_results:
            per_kind.append(f"({letter}) {sum(r.direction == HIGHER for r in kind_results)}"
                            f"/{len(kind_results)} above")
    name = PAPER_NAMES.get(paper_dataset, paper_dataset)

    def label(cell: tuple) -> str:
        return f"({'a' if cell[0] == 'different' else 'b'}) {_attack_label(cell)}"

    return _status(results), (f"AE-C vs C: {_tally(results, 'transfer rows')}; "
                              f"{', '.join(per_kind)}. "
                              f"Paper ({name}): {_paper_check(pairs, label)}.")


def pooled(rows: list[Row]) -> list[Row]:
    """One row per seed standing for all of ``rows`` (cells of one model): the mean
    accuracy over them, and their points side by side (cell k's image i as point
    k * n + i), so two models' pooled rows pair up point by point."""
    out = []
    for seed, reps in group(rows, "seed").items():
        cells = sorted(reps, key=lambda r: tuple(str(r.get(k)) for k in ("box", "attack",
                                                                           "eps")))
        n = cells[0].get("n") or 0
        same_n = all(r.get("n") == n for r in cells)
        row: Row = {"seed": seed[0], "accuracy": mean(r["accuracy"] for r in cells),
                    "n": n * len(cells)}
        if same_n and all("points" in r for r in cells):
            row["points"] = [k * n + i for k, r in enumerate(cells) for i in r["points"]]
        out.append(row)
    return out


def _mean_over_eps(rows: list[Row], **match: object) -> list[Row]:
    """The pooled rows of one model over every eps > 0 (FGSM and PGD)."""
    return pooled([r for r in rows if r["eps"] and r.get("accuracy") is not None
                   and all(r.get(k) == v for k, v in match.items())])


def masking(rows: list[Row], paper_dataset: str) -> tuple[str, str]:
    """Claim (3), Fig. 2: the AE adds accuracy on top of temperature and GCE in both
    boxes, where a masking defense alone gains white-box and loses it black-box."""
    results, pieces = [], []
    for box in ("white", "black"):
        box_pieces = []
        for defense in ("T", "GCE"):
            c = _mean_over_eps(rows, box=box, variant=f"C+{defense}")
            a = _mean_over_eps(rows, box=box, variant=f"(AE-C)+{defense}")
            result = paired(c, a) if c and a else None
            if result is None:
                continue
            results.append(result)
            box_pieces.append(f"(AE-C)+{defense} {fmt(summary(a).mean, 1)}% vs C+{defense} "
                              f"{fmt(summary(c).mean, 1)}% ({result.text()})")
        if box_pieces:
            pieces.append(f"{box}-box " + ", ".join(box_pieces))
    text = "Mean accuracy over eps > 0 (FGSM and PGD): " + "; ".join(pieces) + "."
    plain = _mean_over_eps(rows, box="black", variant="C")
    alone = []
    for d in ("T", "GCE"):
        defended = _mean_over_eps(rows, box="black", variant=f"C+{d}")
        if plain and defended and (result := paired(plain, defended)) is not None:
            alone.append(f"C+{d} {result.text()}")
    if alone:
        text += " Masking alone vs plain C, black-box: " + ", ".join(alone) + " points."
    where = "CIFAR-10" if paper_dataset == "cifar10" else "CIFAR-10 only"
    text += (f" Paper ({where}, plot only): the AE variants above the masking defenses in "
             "both rows; the masking defenses alone not robust black-box.")
    return _status(results), text


def robust_features(rows: list[Row], paper_dataset: str) -> tuple[str, str]:
    """Claim (4), Table 3: more weight on reconstruction (lambda, gamma), more robust
    latent features; judged first setting against last per attack and epsilon."""
    results: list[Paired] = []
    pieces, paper_pieces = [], []
    for method in ("regularization", "alternating"):
        mine = [r for r in rows if r["method"] == method]
        settings = list(dict.fromkeys(r["setting"] for r in mine))
        if len(settings) < 2:
            continue
        by = group(mine, "setting", "attack", "eps")
        pairs = [(by[(settings[0], *cell)], by[(settings[-1], *cell)])
                 for cell in dict.fromkeys((a, e) for _, a, e in by)
                 if (settings[0], *cell) in by and (settings[-1], *cell) in by]
        method_results = [r for a, b in pairs if (r := paired(a, b)) is not None]
        results += method_results
        step = f"{setting_label(settings[0])} → {setting_label(settings[-1])}"
        pieces.append(f"{step}: {_tally(method_results, '(attack, eps) cells')}")
        paper_gains = [b[0]["paper"] - a[0]["paper"] for a, b in pairs
                       if a[0].get("paper") is not None and b[0].get("paper") is not None]
        if paper_gains:
            paper_pieces.append(f"{step}: higher in {sum(g > 0 for g in paper_gains)} of "
                                f"{len(paper_gains)} cells, mean {signed(mean(paper_gains))}")
    if not pieces:
        return NO_DATA, f"Fewer than two settings of {LAMBDA} or {GAMMA}: nothing to compare."
    paper = "; ".join(paper_pieces) or "no published numbers for these cells"
    return _status(results), "; ".join(pieces) + f". Paper (MNIST): {paper}."


def gradient(rows: list[Row], paper_dataset: str) -> tuple[str, str]:
    """Claim (5), Table 4: the paper's text says the AE lowers the softmax gradient
    amplitude G on MNIST and raises it on CIFAR-10. With several seeds the ratio's 95%
    interval must lie on one side of 1 for a verdict either way."""
    by = group(rows, "variant", "target")
    c, a = by.get(("C", "true"), []), by.get(("AE-C", "true"), [])
    a_by_seed = {seed_of(r): r for r in a}
    ratios = [{"ratio": ratio(a_by_seed[seed_of(r)].get("gradient_amplitude"),
                              r.get("gradient_amplitude"))}
              for r in c if seed_of(r) in a_by_seed]
    ratios = [r for r in ratios if r["ratio"] is not None]
    if not ratios:
        return NO_DATA, "No true-class gradient amplitude for both C and AE-C."
    ours = summary(ratios, "ratio")
    gc = summary(c, "gradient_amplitude").mean
    ga = summary(a, "gradient_amplitude").mean
    claimed_higher = paper_dataset == "cifar10"
    effect = "raises" if ours.mean > 1 else "lowers" if ours.mean < 1 else "leaves unchanged"
    spread = ("" if ours.lo is None else f", 95% interval {fmt(ours.lo)} - {fmt(ours.hi)}")
    text = (f"G(AE-C) / G(C) = {ours.text()}{spread} ({sci(gc)} → {sci(ga)}): the AE "
            f"{effect} G. Paper's text: {'higher' if claimed_higher else 'lower'} with the AE "
            f"on {PAPER_NAMES.get(paper_dataset, paper_dataset)}")
    published = ratio(a[0].get("paper"), c[0].get("paper"))
    if published is not None:
        text += f"; its Table 4 gives a ratio of {fmt(published)}"
        if (published > 1) != claimed_higher:
            text += ", which contradicts its text"
    low, high = (ours.mean, ours.mean) if ours.lo is None else (ours.lo, ours.hi)
    if low > 1 or high < 1:
        status = AGREES if (low > 1) == claimed_higher else DISAGREES
    else:
        status = INCONCLUSIVE
    return status, text + "."


def adversarial(rows: list[Row], paper_dataset: str) -> tuple[str, str]:
    """Fig. 4: the AE's gain over an adversarially trained classifier. MNIST: it narrows
    but stays positive; CIFAR-10: it turns negative. Each gain is a paired difference
    pooled over eps > 0, judged against its noise."""
    pooled_rows = {v: _mean_over_eps(rows, variant=v) for v in ("C", "AE-C", "advC", "AE-advC")}
    if any(not v for v in pooled_rows.values()):
        return NO_DATA, "Fig. 4 lacks one of C, AE-C, advC, AE-advC at eps > 0."
    plain = paired(pooled_rows["C"], pooled_rows["AE-C"])
    adv = paired(pooled_rows["advC"], pooled_rows["AE-advC"])
    acc = {v: summary(r).mean for v, r in pooled_rows.items()}
    attack = ATTACK_LABELS.get(rows[0]["attack"], rows[0]["attack"])
    text = (f"Mean {attack} accuracy over eps > 0: AE-C over C {plain.text()} points "
            f"(C {fmt(acc['C'], 1)}%, AE-C {fmt(acc['AE-C'], 1)}%); AE-advC over advC "
            f"{adv.text()} points (advC {fmt(acc['advC'], 1)}%, AE-advC "
            f"{fmt(acc['AE-advC'], 1)}%); \"*\": significant at 5% (paired).")
    if paper_dataset == "cifar10":
        status = {LOWER: AGREES, HIGHER: DISAGREES}.get(adv.direction, INCONCLUSIVE)
        return status, text + " Paper (CIFAR-10, plot only): AE-advC below advC."
    narrows = adv.diff < plain.diff
    above = {HIGHER: True, LOWER: False}.get(adv.direction)
    if above is None:
        status = INCONCLUSIVE
    else:
        status = AGREES if narrows and above else DISAGREES if not (narrows or above) else MIXED
    where = {True: "above", False: "below", None: "not distinguishable from"}[above]
    return status, text + (f" The AE's gain {'shrinks' if narrows else 'does not shrink'} "
                           f"with adversarial training and AE-advC is {where} advC. Paper "
                           "(MNIST, plot only): the gain shrinks, AE-advC still above advC.")


Judge = Callable[[list[Row], str], tuple[str, str]]
CLAIMS: tuple[tuple[str, str, Judge], ...] = (
    ("table1", "(1) AE-C more robust than C, white-box (Table 1)", white_box),
    ("table2", "(2) ... and black-box, by transfer (Table 2)", black_box),
    ("figure2", "(3) The AE adds to temperature / GCE; not gradient masking (Fig. 2)", masking),
    ("table3", f"(4) Robust features: accuracy rises with {LAMBDA} and {GAMMA} (Table 3)",
     robust_features),
    ("table4", "(5) Gradient amplitude G with the AE (Table 4)", gradient),
    ("figure4", "(6) AE with adversarial training (Fig. 4)", adversarial),
)


def verdicts(part: Part) -> list[Verdict]:
    """Every claim for one part, "not run" where its experiment has no rows."""
    out = []
    for experiment, claim, judge in CLAIMS:
        rows = part.rows.get(experiment)
        if rows is None:
            out.append(Verdict(claim, NOT_RUN, f"`{experiment}`: {part.missing(experiment)}."))
        else:
            out.append(Verdict(claim, *judge(rows, part.paper_dataset)))
    return out
