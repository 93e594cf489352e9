"""An audit's page: verdict and evidence, ladder, checks, probes and the eps curve, as
report blocks (so Markdown and HTML say the same)."""

from __future__ import annotations

from typing import Any

from aerobust.report.blocks import Block, Figure, Heading, Paragraph, Table
from aerobust.report.figures import audit_png


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
    blocks: list[Block] = [
        Heading(1, title),
        Paragraph(f"**Verdict: {audit['verdict']}** at eps {audit['eps']:.4g} on "
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
        Heading(2, "Robust accuracy against eps"),
        Paragraph("APGD-CE then APGD-DLR on the model as it is, on the first "
                  f"{audit['curve'][0]['n'] if audit['curve'] else 0} points."),
        Table(["eps", "robust accuracy (%)"],
              [[f"{c['eps']:.4g}", _pct(c["robust_accuracy"])] for c in audit["curve"]],
              numeric=[True, True]),
    ]
    return blocks
