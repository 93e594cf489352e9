"""The paper, audited: the attack-ladder audit (``aerobust.audit``) of every model the
paper's robustness claims rest on, at the paper's eps values.

C and AE-C (Table 1's claim), the temperature and GCE models of Fig. 2 (the paper's
examples of gradient masking, with and without the AE) and advC / AE-advC of Fig. 4.
All are audited on the same first ``audit_n`` test images, so two models can be
compared point by point (the report pairs them with McNemar's test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aerobust.audit import audit as run_audit
from aerobust.experiments import figure2
from aerobust.experiments.common import Cells, Row, Workspace, fmt, percent
from aerobust.experiments.table1 import PAPER_EPS
from aerobust.models import AEClassifier
from aerobust.training import adversarial_settings

EXPERIMENT = "audit"
VARIANTS = (*figure2.VARIANTS, "advC", "AE-advC")
# The quick preset audits with the quick budget on 100 digits; elsewhere the standard
# budget (AutoAttack's strength) on at most 1,000 test images.
AUDIT_BUDGET = {"digits": "quick"}
AUDIT_N = {"digits": 100}
DEFAULT_AUDIT_BUDGET, DEFAULT_AUDIT_N = "standard", 1000


def audit_budget(ws: Workspace) -> str:
    return ws.config.audit_budget or AUDIT_BUDGET.get(ws.family, DEFAULT_AUDIT_BUDGET)


def audit_n(ws: Workspace) -> int:
    """Test images audited: the config's, else the family's, never more than n_eval."""
    n = ws.config.audit_n or AUDIT_N.get(ws.family, DEFAULT_AUDIT_N)
    return min(n, ws.config.n_eval or n, len(ws.dataset.x_test))


def eps_list(ws: Workspace) -> tuple[float, ...]:
    return ws.config.eps or PAPER_EPS[ws.family]


def cell_count(ws: Workspace) -> int:
    return len(VARIANTS) * len(eps_list(ws))


def models(ws: Workspace) -> dict[str, tuple[Any, dict[str, str]]]:
    """Fig. 2's six models plus advC and AE-advC, with the runs behind each."""
    out = figure2.models(ws)
    adversarial = ws.train(ws.classifier_arch, adversarial=adversarial_settings(ws.dataset))
    adv = adversarial.load(ws.device)
    ae_runs = {"autoencoder_run": out["AE-C"][1]["autoencoder_run"]}
    runs = {"classifier_run": adversarial.path.name}
    out["advC"] = (adv, runs)
    out["AE-advC"] = (AEClassifier(out["AE-C"][0].autoencoder, adv).eval(), {**runs, **ae_runs})
    return out


def run(ws: Workspace, out_dir: Path) -> list[Row]:
    cells = Cells(out_dir, EXPERIMENT, ws)
    targets = models(ws)
    n, budget = audit_n(ws), audit_budget(ws)
    x, y = ws.eval_split(n)
    rows = []
    for variant in VARIANTS:
        model, model_runs = targets[variant]
        for eps in eps_list(ws):
            key = {"variant": variant, "eps": eps, "budget": budget}

            def compute(model: Any = model, eps: float = eps,
                        model_runs: dict[str, str] = model_runs) -> Row:
                result = run_audit(model, x, y, eps / 255, budget=budget, seed=ws.config.seed,
                                   batch_size=ws.config.batch_size, progress=ws.progress)
                return row(result.to_dict(), model_runs)

            rows.append(cells.run(key, compute))
    return rows


def row(audit: dict[str, Any], runs: dict[str, str]) -> Row:
    """One cell's numbers (percent, as the other experiments) and the evidence; the
    per-point ledger is kept as the indices robust under each attack, what a paired
    comparison of two models on the same points needs."""
    ledger = audit.pop("ledger")
    return {
        "n": audit["n"], "verdict": audit["verdict"],
        "clean_accuracy": percent(audit["clean_accuracy"]),
        "baseline_accuracy": percent(audit["baseline_robust_accuracy"]),
        "audited_accuracy": percent(audit["robust_accuracy"]),
        "audited_interval": [percent(v) for v in audit["robust_interval"]],
        "baseline_interval": [percent(v) for v in audit["baseline_interval"]],
        "gap": percent(audit["gap"]), "mcnemar_p": audit["mcnemar_p"],
        "closed_by": audit["closed_by"], "reasons": audit["reasons"],
        "robust_points": [p["index"] for p in ledger
                          if p["clean_correct"] and p["broken_by"] is None],
        "baseline_robust_points": [p["index"] for p in ledger
                                   if p["clean_correct"] and p["broken_by"] != "pgd-ce"],
        "audit": audit, **runs,
    }


def markdown(rows: list[Row]) -> str:
    """Per model and eps: the paper's attack, the audited accuracy and the verdict."""
    if not rows:
        return ""
    lines = [f"### Audit on `{rows[0]['dataset']}`: {rows[0]['n']} test images, budget "
             f"`{rows[0]['budget']}`", "",
             "| model | eps | clean | PGD-CE (paper's attack) | audited | 95% interval | "
             "verdict | closed by |", "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        lo, hi = r["audited_interval"]
        lines.append(f"| {r['variant']} | {r['eps']:g} | {fmt(r['clean_accuracy'])} | "
                     f"{fmt(r['baseline_accuracy'])} | {fmt(r['audited_accuracy'])} | "
                     f"{fmt(lo)} - {fmt(hi)} | {r['verdict']} | {r['closed_by'] or '-'} |")
    return "\n".join(lines) + "\n"
