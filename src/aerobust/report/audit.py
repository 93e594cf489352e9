"""An audit's page: verdict and evidence, ladder, checks, probes and the eps curve, as
report blocks (so Markdown and HTML say the same)."""

from __future__ import annotations

from typing import Any

from aerobust.report.blocks import Block, Figure, Heading, Paragraph, Table
from aerobust.report.figures import audit_png, paper_audit_png
from aerobust.report.load import PAPER_NAMES, Part, Row
from aerobust.report.numbers import fmt, signed
from aerobust.report.seeds import group, seed_of, summary
from aerobust.stats import mcnemar


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _attacked(rung: dict[str, Any]) -> str:
    """Points a rung attacked, and for a screened one what its sample found."""
    screen = rung.get("screened")
    if not screen:
        return str(rung["attacked"])
    if screen["escalated"]:
        return f"{rung['attacked']} (sample of {screen['sample']} broke {screen['broken']})"
    return f"{rung['attacked']} sampled (broke none: not run on the rest)"


def audit_blocks(audit: dict[str, Any], title: str = "Audit") -> list[Block]:
    """Blocks for one ``Audit.to_dict()``."""
    lo, hi = audit["robust_interval"]
    norm = audit.get("norm", "Linf")
    blocks: list[Block] = [
        Heading(1, title),
        Paragraph(f"**Verdict: {audit['verdict']}** at {norm} eps {audit['eps']:.4g} on "
                  f"{audit['n']} points, budget `{audit['budget']['name']}`, seed "
                  f"{audit['seed']}, {audit['seconds']:.1f} s."),
        Table(["", "robust accuracy (%)", "95% interval"],
              [["clean", _pct(audit["clean_accuracy"]), "-"],
               ["paper's attack (PGD on CE)", _pct(audit["baseline_robust_accuracy"]),
                "{} - {}".format(*map(_pct, audit["baseline_interval"]))],
               ["audited (per-point minimum over the ladder)", _pct(audit["robust_accuracy"]),
                f"{_pct(lo)} - {_pct(hi)}"]], numeric=[False, True, True]),
        Paragraph(f"Gap {100 * audit['gap']:.1f} points, McNemar p = {audit['mcnemar_p']:.2g}"
                  + (f"; closed mostly by `{audit['closed_by']}`." if audit["closed_by"]
                     else ".")),
        *[Paragraph(f"- {reason}") for reason in audit["reasons"] + audit["notes"]],
        Figure("audit", audit_png(audit), "robust accuracy per rung and against eps",
               "Left: robust accuracy after each rung (orange: the rung broke points; the "
               "baseline bar is PGD on CE alone). Right: the eps curve of the cheap "
               "gradient cascade, and the audited value at the audit's eps."),
        Heading(2, "Attack ladder"),
        Table(["rung", "kind", "points attacked", "broken", "robust after (%)", "seconds",
               "what"],
              [[f"`{r['name']}`", r["kind"], _attacked(r), str(r["broken"]),
                _pct(r["robust_accuracy"]), f"{r['seconds']:.1f}", r["description"]]
               for r in audit["rungs"]],
              numeric=[False, False, True, True, True, True, False]),
        *([Paragraph(f"Screened rungs ran first on a random sample of {screen} "
                     "still-robust points, and on the rest only if they broke one there: a "
                     "rung that would break 3% of the rest slips through such a sample with "
                     f"probability {0.97 ** screen:.0%}.")]
          if (screen := audit["budget"].get("screen"))
          and any(r.get("screened") for r in audit["rungs"]) else []),
        Heading(2, "Sanity checks"),
        Table(["check", "result", "detail"],
              [[c["name"], "passed" if c["passed"] else "failed", c["detail"]]
               for c in audit["checks"]]),
        Heading(2, "Probes"),
        Table(["probe", "part", "fired", "value", "detail"],
              [[p["name"], p["target"], "yes" if p["fired"] else "no", f"{p['value']:.3g}",
                p["detail"]] for p in audit["probes"]],
              numeric=[False, False, False, True, False]),
        Heading(2, f"Robust accuracy against {norm} eps"),
        Paragraph("APGD-CE then APGD-DLR on the model as it is, on the first "
                  f"{audit['curve'][0]['n'] if audit['curve'] else 0} points."),
        Table([f"{norm} eps", "robust accuracy (%)"],
              [[f"{c['eps']:.4g}", _pct(c["robust_accuracy"])] for c in audit["curve"]],
              numeric=[True, True]),
    ]
    return blocks


# The paper's models audited (the reproduce report's "Audit" section).

SIGNIFICANT = 0.05
AGREES, DISAGREES, MIXED, INCONCLUSIVE = "agrees", "disagrees", "mixed", "inconclusive"


def _combine(statuses: list[str]) -> str:
    """One word for a claim judged at several eps: the eps where the points cannot tell
    neither support nor contradict it."""
    if not statuses:
        return "no data"
    decisive = set(statuses) - {INCONCLUSIVE}
    if not decisive:
        return INCONCLUSIVE
    return decisive.pop() if len(decisive) == 1 else MIXED


def _compare(rows: list[Row], first: str, second: str, sign: int = 1
             ) -> tuple[list[str], list[str]]:
    """``second`` against ``first`` per eps on the same points: the audited robust
    accuracies and McNemar's exact test on the points robust under one only. ``sign``
    +1: the claim is that ``second`` is more robust; -1: less."""
    by = {(r["variant"], r["eps"], seed_of(r)): r for r in rows}
    seeds = sorted({seed_of(r) for r in rows})
    statuses, pieces = [], []
    for eps, seed in sorted({(r["eps"], seed_of(r)) for r in rows}):
        a, b = by.get((first, eps, seed)), by.get((second, eps, seed))
        if a is None or b is None or a["n"] != b["n"]:
            continue
        ra, rb = set(a["robust_points"]), set(b["robust_points"])
        b_only, a_only = len(rb - ra), len(ra - rb)
        p = mcnemar(b_only, a_only)
        diff = b["audited_accuracy"] - a["audited_accuracy"]
        if p >= SIGNIFICANT or diff == 0:
            statuses.append(INCONCLUSIVE)
        else:
            statuses.append(AGREES if (diff > 0) == (sign > 0) else DISAGREES)
        where = f"eps {eps:g}" + (f" seed {seed}" if len(seeds) > 1 else "")
        pieces.append(f"{where}: {second} {fmt(b['audited_accuracy'], 1)}% vs {first} "
                      f"{fmt(a['audited_accuracy'], 1)}% ({signed(diff, 1)} points; robust "
                      f"under one only: {b_only} vs {a_only}, McNemar p = {p:.2g})")
    return statuses, pieces


def _verdicts_of(rows: list[Row], variants: tuple[str, ...], want: str
                 ) -> tuple[list[str], list[str]]:
    """Each model's audit verdict per eps, read against the verdict the claim wants."""
    statuses, pieces = [], []
    several = len({seed_of(r) for r in rows}) > 1
    for r in rows:
        if r["variant"] not in variants:
            continue
        verdict = r["verdict"]
        statuses.append(INCONCLUSIVE if verdict == "inconclusive"
                        else AGREES if verdict == want else DISAGREES)
        why = f"; closed by `{r['closed_by']}`" if r["closed_by"] else ""
        failed = [c["name"] for c in r["audit"]["checks"] if not c["passed"]]
        if failed:
            why += f"; failed {', '.join(failed)}"
        seed = f" seed {seed_of(r)}" if several else ""
        pieces.append(f"{r['variant']} eps {r['eps']:g}{seed}: {verdict} (PGD-CE "
                      f"{fmt(r['baseline_accuracy'], 1)}% -> audited "
                      f"{fmt(r['audited_accuracy'], 1)}%{why})")
    return statuses, pieces


def _claims(rows: list[Row], paper_dataset: str) -> list[tuple[str, str, str]]:
    """(claim, status, figures) for each claim the audit speaks to."""
    out = []

    def add(claim: str, found: tuple[list[str], list[str]]) -> None:
        statuses, pieces = found
        out.append((claim, _combine(statuses), "; ".join(pieces) + "." if pieces
                    else "Not audited."))

    add("(1) AE-C more robust than C, white-box: audited on the same points",
        _compare(rows, "C", "AE-C"))
    add("(3) AE-C's robustness is not gradient masking: its audit finds none",
        _verdicts_of(rows, ("AE-C",), "no-masking-detected"))
    add("(3) Temperature and GCE are gradient masking (Fig. 2's premise): their audits "
        "find it", _verdicts_of(rows, ("C+T", "C+GCE"), "masking"))
    t, gce = _compare(rows, "C+T", "(AE-C)+T"), _compare(rows, "C+GCE", "(AE-C)+GCE")
    add("(3) The AE adds robustness to temperature / GCE, audited",
        (t[0] + gce[0], t[1] + gce[1]))
    sign = -1 if paper_dataset == "cifar10" else 1
    where = PAPER_NAMES.get(paper_dataset, paper_dataset)
    add(f"(6) AE-advC {'above' if sign > 0 else 'below'} advC (the paper's {where}), "
        "audited", _compare(rows, "advC", "AE-advC", sign))
    return out


def _over_seeds(rows: list[Row], variants: list[str]) -> Table:
    """Per model and eps, the audit summarised over its seeds, verdicts counted."""
    body = []
    for (variant, eps), reps in sorted(group(rows, "variant", "eps").items(),
                                       key=lambda kv: (variants.index(kv[0][0]), kv[0][1])):
        audited = summary(reps, "audited_accuracy")
        drops = [{"seed": seed_of(r), "gap": r["audited_accuracy"] - r["baseline_accuracy"]}
                 for r in reps]
        verdicts = [r["verdict"] for r in reps]
        body.append([variant, f"{eps:g}", str(len(reps)),
                     summary(reps, "clean_accuracy").text(1),
                     summary(reps, "baseline_accuracy").text(1),
                     audited.text(1),
                     "-" if audited.lo is None else f"{fmt(audited.lo, 1)} - {fmt(audited.hi, 1)}",
                     summary(drops, "gap").text(1),
                     ", ".join(f"{v} {verdicts.count(v)}" for v in dict.fromkeys(verdicts))])
    return Table(["model", "eps", "seeds", "clean (%)", "PGD-CE (%)", "audited (%)",
                  "95% interval", "audited - PGD-CE", "verdicts"], body,
                 numeric=[False, True, True, True, True, True, True, True, False])


def paper_audit_blocks(part: Part) -> list[Block]:
    """One part's audit of the paper's models: the table, the figure, the claims."""
    every = part.rows.get("audit")
    if every is None:
        return [Paragraph(f"`{part.name}`: {part.missing('audit')}.")]
    # Linf rows (eps in 0-255 units) carry the paper's claims; L2 rows get their own table.
    rows = [r for r in every if r.get("norm", "Linf") == "Linf"]
    l2 = [r for r in every if r.get("norm") == "L2"]
    if not rows:
        return [Paragraph(f"`{part.name}`: no Linf audit rows."), *_l2_blocks(l2)]
    first = rows[0]
    seeds = sorted({seed_of(r) for r in rows})
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    table = _audit_table(rows, variants, "eps")
    claims = _claims(rows, part.paper_dataset)
    spread = [] if len(seeds) < 2 else [
        Paragraph(f"Over the {len(seeds)} seeds (mean ± std; the interval is Student's t over "
                  "the seeds; `audited - PGD-CE` taken per seed, then summarised); each "
                  "seed's audit follows."),
        _over_seeds(rows, variants)]
    return [
        Paragraph(f"Every model audited on the first {first['n']} test images of "
                  f"`{part.name}`, budget `{first['budget']}`, seed(s) "
                  f"{', '.join(map(str, seeds))}, each seed its own models. PGD-CE is the "
                  "paper's attack; audited is the "
                  "per-point minimum over the ladder (an upper bound on the true robust "
                  "accuracy), with its Clopper-Pearson interval; the gap and McNemar's test "
                  "compare the two on the same points. Each audit's evidence (rungs, sanity "
                  f"checks, probes, eps curve): `{part.name}/audit.json`."),
        *spread,
        table,
        Figure(f"audit_{part.name}", paper_audit_png(rows, part.name),
               f"the paper's models audited on {part.name}",
               "Per eps, each model's robust accuracy under the paper's attack (light) and "
               "audited (dark, 95% interval: the points' with one seed, Student's t over "
               "the seeds' means with several); blue without the AE, orange with it."),
        Table(["Claim", "Audit", "Figures"], [list(c) for c in claims], status_column=1),
        *_l2_blocks(l2),
    ]


def _audit_table(rows: list[Row], variants: list[str], eps_title: str) -> Table:
    """One row per audit: the model, its eps and seed, the numbers, verdict, evidence."""
    return Table(
        ["model", eps_title, "seed", "clean (%)", "PGD-CE (%)", "audited (%)", "95% interval",
         "audited - PGD-CE", "McNemar p", "verdict", "closed by", "evidence"],
        [[r["variant"], f"{r['eps']:g}", str(seed_of(r)), fmt(r["clean_accuracy"], 1),
          fmt(r["baseline_accuracy"], 1), fmt(r["audited_accuracy"], 1),
          "{} - {}".format(*(fmt(v, 1) for v in r["audited_interval"])),
          signed(r["audited_accuracy"] - r["baseline_accuracy"], 1), f"{r['mcnemar_p']:.2g}",
          r["verdict"],
          f"`{r['closed_by']}`" if r["closed_by"] else "-", " ".join(r["reasons"])]
         for r in sorted(rows, key=lambda r: (variants.index(r["variant"]), r["eps"],
                                              seed_of(r)))],
        numeric=[False, True, True, True, True, True, True, True, True, False, False, False],
        status_column=9)


def _l2_blocks(rows: list[Row]) -> list[Block]:
    """C and AE-C audited in L2, at radii around CW's and DeepFool's median L2."""
    if not rows:
        return []
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    return [
        Paragraph("In L2 (eps in the [0,1] pixel scale, as AutoAttack's; PGD-CE is PGD-L2 "
                  "on cross-entropy), C and AE-C at radii around the median L2 of the "
                  "paper's minimum-norm attacks, CW and DeepFool (Table 1):"),
        _audit_table(rows, variants, "L2 eps"),
    ]
