"""``audit(model, x, y, eps)``: is a defense robust, or does it only mask gradients?

The audit runs cheap probes, then climbs an attack ladder over the same points (each
rung only on the points still robust), keeps a per-point ledger of which attack first
broke each point, runs the sanity checks of AutoAttack's authors and of Carlini et al.
(2019), and gives a verdict with its evidence: the audited robust accuracy (the
per-point minimum over the ladder, an upper bound on the truth) beside the paper's
attack, with a paired test on the same points.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from aerobust.attacks import judgment
from aerobust.attacks.base import attack_mode
from aerobust.attacks.judgment import JUDGE_DRAWS, votes
from aerobust.attacks.losses import margin as margin_loss
from aerobust.attacks.runner import Execution
from aerobust.audit.ladder import (
    BUDGETS,
    Budget,
    Rung,
    build_rungs,
    curve_attacks,
    ladder_notes,
    run_attack,
)
from aerobust.audit.outputs import logit_view
from aerobust.audit.probes import Probe, flagged_stages, is_random, run_probes, train_mode
from aerobust.audit.stages import split
from aerobust.audit.state import AuditState, rng_for, state_key
from aerobust.audit.stats import mcnemar, proportion_interval, smallest_significant_count
from aerobust.audit.threat import check as check_threat
from aerobust.audit.threat import curve_radii
from aerobust.audit.threat import notes as threat_notes
from aerobust.errors import UserError
from aerobust.rejection import rejects

VERDICTS = ("masking", "no-masking-detected", "inconclusive")
# Robust accuracy at the largest eps of the curve above this fails "about 0".
LARGE_EPS_CEILING = 0.05
CHECKS_DOC = "docs/audit.md"  # one section per check, headed by its name


@dataclass(frozen=True)
class Check:
    """One sanity check: ``passed`` or not, with the number behind it."""

    name: str
    passed: bool
    value: float
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Audit:
    """The audit of one model at one eps on fixed points. Accuracies are fractions in
    [0,1] of all ``n`` points (a point is robust when it is classified correctly clean
    and under every attack), as in ``Evaluation``. ``execution`` is what every attack of
    the audit ran under (``Execution.record``), every default resolved."""

    eps: float
    n: int
    budget: Budget
    seed: int
    clean_accuracy: float
    baseline_robust_accuracy: float
    robust_accuracy: float
    robust_interval: tuple[float, float]
    baseline_interval: tuple[float, float]
    mcnemar_p: float
    verdict: str
    reasons: list[str]
    stages: list[str]
    random: bool
    probes: list[Probe]
    checks: list[Check]
    rungs: list[dict[str, Any]]
    curve: list[dict[str, Any]]
    ledger: list[dict[str, Any]]
    seconds: float
    execution: dict[str, Any]
    closed_by: str | None = None
    gap_threshold: float = 0.05
    notes: list[str] = field(default_factory=list)
    # steps loaded from ``state`` rather than computed: how this run went, not what the
    # audit found, so not in ``to_dict`` (a resumed audit's JSON is an uninterrupted one's)
    resumed: list[str] = field(default_factory=list)
    norm: str = "Linf"  # the threat model eps is a radius in

    @property
    def gap(self) -> float:
        """How much the paper's attack overstates robust accuracy (fraction)."""
        return self.baseline_robust_accuracy - self.robust_accuracy

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items()
               if k not in ("probes", "checks", "resumed")}
        out["budget"] = self.budget.to_dict()
        out["gap"] = self.gap
        out["probes"] = [p.to_dict() for p in self.probes]
        out["checks"] = [c.to_dict() for c in self.checks]
        return out

    # -- saving (audit/save.py) --
    def save(self, out: str | Path, *, title: str = "Audit",
             about: dict[str, Any] | None = None) -> Path:
        """Write ``audit.json`` (``about``, say the data and models, then ``to_dict``),
        ``audit.md``, ``audit.html`` and their figures into the folder ``out``, each
        atomically; returns ``out``."""
        from aerobust.audit.save import save_audit

        return save_audit({**(about or {}), **self.to_dict()}, Path(out), title)


def _judge(model: nn.Module, draws: int) -> Any:
    """Whether ``x_adv`` fools the audited model (the tool's judgment,
    ``attacks.judgment``: a majority of ``draws`` fresh forwards for a random model) and
    the logit margin ``max_{j!=y} z_j - z_y`` of the mean logits."""

    def judge(x_adv: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        wrong, mean = votes(model, x_adv, y, draws)
        return wrong, margin_loss(mean, y)

    return judge


def _check_inputs(model: nn.Module, x: Tensor, y: Tensor, eps: float, budget: str,
                  device: torch.device, norm: str) -> str:
    norm = check_threat(norm, eps)
    if budget not in BUDGETS:
        raise UserError(f"audit: budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    if not torch.is_floating_point(x) or x.dim() < 2 or len(x) == 0:
        raise UserError(f"audit: x must be a non-empty float batch (N, ...), got {x.dtype} "
                        f"{tuple(x.shape)}")
    if y.shape != (len(x),) or y.dtype.is_floating_point:
        raise UserError(f"audit: y must be {len(x)} integer labels, got {y.dtype} "
                        f"{tuple(y.shape)}")
    if float(x.min()) < 0 or float(x.max()) > 1:
        raise UserError("audit: x must lie in [0,1] (normalisation belongs inside the model)")
    with torch.no_grad():
        out = model(x[:2].to(device))
    if not isinstance(out, Tensor) or out.dim() != 2 or len(out) != min(2, len(x)) \
            or out.shape[1] < 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise UserError(f"audit: the model must return logits of shape (N, classes), got "
                        f"{shape} for {min(2, len(x))} inputs")
    if out.shape[1] <= int(y.max()):
        raise UserError(f"audit: labels go up to {int(y.max())} but the model has "
                        f"{out.shape[1]} classes")
    if not torch.isfinite(out).all():
        raise UserError("audit: the model returns NaN or infinite logits on clean inputs")
    return norm


def audit(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, budget: str = "standard",
          seed: int = 0, batch_size: int = 256, gap_threshold: float = 0.05,
          alpha: float = 0.05, progress: bool = False,
          execution: Execution | None = None, norm: str = "Linf",
          fab: bool | None = None, state: str | Path | None = None) -> Audit:
    """Audit ``model`` on ``(x, y)`` (pixels in [0,1]) at radius ``eps`` in ``norm``
    (``Linf``, ``L2`` or ``L1``; ``eps`` in the [0,1] pixel scale, ``audit.threat``),
    every attack under ``execution`` (the default policy when None; resolved once, for
    the largest batch, so the record is what ran). ``fab``: FAB-T as a rung (None: where
    the budget runs it, ``thorough``).

    ``gap_threshold``: how far (fraction of points) the paper's attack may overstate
    robust accuracy before, if McNemar's test calls the gap significant at ``alpha``,
    the verdict is ``masking``. Reproducible for a seed: the model's own randomness is
    drawn from torch's generator, seeded here and again before every rung.

    ``state``: a folder where every finished rung's per-point results are written as it
    ends (``audit.state``); an audit killed at any moment and called again with the same
    arguments computes only the rungs that had not finished, and returns what an
    uninterrupted audit returns (timings aside). A state written for other settings,
    points, weights or code is refused (``UserError``).

    Args:
        model: any ``nn.Module`` mapping [0,1] images to logits; an ``AEClassifier`` or a
            leading ``nn.Sequential`` has its front stages probed one by one.
        x: the images (N, ...) in [0,1].
        y: their labels (N,).
        eps: the radius in ``norm``, [0,1] pixel scale (Linf ``20 / 255``; above 1 refused).
        norm: ``"Linf"``, ``"L2"`` or ``"L1"``.
        fab: FAB-T as a rung (None: where the budget runs it).
        budget: ``"quick"``, ``"standard"`` (at least AutoAttack's standard strength) or
            ``"thorough"``; see docs/audit.md#budgets.
        seed: seeds every attack and the model's own randomness.
        batch_size: points per attack call.
        gap_threshold, alpha: the verdict's gap (fraction of points) and significance.
        progress: show progress bars.
        execution: how the attacks run (``Execution``); None: the defaults.
        state: a folder for the resumable state (see above); None: none.

    Returns:
        An ``Audit``: ``verdict`` (``masking``, ``no-masking-detected`` or
        ``inconclusive``) with its ``reasons``, ``robust_accuracy`` (the per-point minimum
        over the ladder) and ``robust_interval``, ``baseline_robust_accuracy`` (PGD-40 on
        CE) and ``mcnemar_p``, the ``probes``, ``checks``, ``rungs`` and a per-point
        ``ledger``; ``to_dict()`` for JSON.

    Example:
        >>> from aerobust.audit import audit
        >>> found = audit(model, x, y, eps=8 / 255, budget="quick")
        >>> found.verdict in ("masking", "no-masking-detected", "inconclusive")
        True
        >>> found.robust_accuracy <= found.baseline_robust_accuracy
        True
    """
    device = next((p.device for p in model.parameters()), x.device)
    y = y.long()
    norm = _check_inputs(model, x, y, eps, budget, device, norm)
    plan = BUDGETS[budget]
    largest = min(batch_size, len(x))
    policy = (execution or Execution()).resolve(largest, device)
    saved = None if state is None else AuditState(state, state_key(
        {"eps": eps, "norm": norm, "fab": fab, "budget": plan.to_dict(), "seed": seed,
         "batch_size": batch_size, "execution": policy.record(largest, device)},
        model, x, y))
    start = time.perf_counter()
    torch.manual_seed(seed)
    as_given = train_mode(model)
    with attack_mode(model):
        stages = split(model, x[:1].to(device))
        probe_x, probe_y = x[: plan.probe_n].to(device), y[: plan.probe_n].to(device)
        probes = [*run_probes(model, stages, probe_x, probe_y, eps, norm=norm), as_given]
        flagged = flagged_stages(probes, stages)
        random = is_random(probes) or judgment.is_random(model, probe_x)
        draws = JUDGE_DRAWS if random else 1
        judge = _judge(model, draws)
        # clean: a rejection is an error (``aerobust.rejection``); attacked: a held point
        correct = torch.cat([~judgment.fooled(model, x[i : i + batch_size].to(device),
                                              y[i : i + batch_size].to(device), draws,
                                              clean=True).cpu()
                             for i in range(0, len(x), batch_size)])
        # Outputs that are not logits: the ladder attacks a view whose outputs are; the
        # paper's attack sees the model as given, as its users ran it
        view, evidence = logit_view(stages, probe_x)
        probes.append(evidence)
        attacked = model if view is None else view.rebuild()
        rungs = [dataclasses.replace(r, model=model) if r.kind == "baseline" else r
                 for r in build_rungs(attacked, view or stages, eps, plan, seed, flagged,
                                      random, norm, fab)]
        classes = int(model(x[:1].to(device)).shape[1])
        # DLR needs 3 classes, its targeted form 4: fewer, and those rungs cannot run
        rungs = [r for r in rungs if classes >= 3 + bool(getattr(r.attack, "targeted", False))
                 or getattr(r.attack, "loss", "ce") != "dlr"]
        def confirm(adv: Tensor, labels: Tensor, claimed: Tensor) -> Tensor:
            """A random model's claimed breaks need a second, independent majority: the
            per-point minimum over the rungs would otherwise count lucky draws."""
            return judgment.confirmed(model, adv.to(device), labels.to(device), draws,
                                      claimed.to(device)).cpu()

        ledger, rung_rows, baseline_robust = _climb(rungs, x, y, correct, judge, confirm,
                                                    batch_size, device, policy, progress,
                                                    plan.screen, seed, saved, norm)
        curve = saved and saved.load("curve")
        if curve is None:
            rng_for(seed, "curve")
            curve = _curve(attacked, x[: plan.curve_n], y[: plan.curve_n], eps, plan, seed,
                           draws, classes, judge, batch_size, device, policy, progress,
                           norm)
            if saved is not None:
                saved.save("curve", curve)
    n = len(x)
    robust = torch.tensor([p["broken_by"] is None and p["clean_correct"] for p in ledger])
    closed = baseline_robust & ~robust
    checks = _checks(rung_rows, ledger, curve, n)
    robust_acc = robust.double().mean().item()
    baseline_acc = baseline_robust.double().mean().item()
    p_value = mcnemar(int(closed.sum()), int((robust & ~baseline_robust).sum()))
    closers = [r for r in rung_rows if r["kind"] != "baseline" and r["broken"]]
    closed_by = max(closers, key=lambda r: r["broken"])["name"] if closers else None
    verdict, reasons = _verdict(baseline_acc - robust_acc, p_value, checks, n, gap_threshold,
                                alpha, closed_by)
    return Audit(
        eps=eps, n=n, budget=plan, seed=seed, clean_accuracy=correct.double().mean().item(),
        baseline_robust_accuracy=baseline_acc, robust_accuracy=robust_acc,
        robust_interval=proportion_interval(int(robust.sum()), n),
        baseline_interval=proportion_interval(int(baseline_robust.sum()), n),
        mcnemar_p=p_value, verdict=verdict, reasons=reasons, stages=stages.names,
        random=random, probes=probes, checks=checks, rungs=rung_rows, curve=curve,
        ledger=ledger, seconds=time.perf_counter() - start,
        execution=policy.record(largest, device), closed_by=closed_by,
        gap_threshold=gap_threshold, resumed=[] if saved is None else saved.resumed,
        notes=[f"BPDA through {', '.join(flagged)}"] * bool(flagged)
        + [f"randomised model: judged by {judgment.describe(draws)}, every break "
           f"confirmed by a second, independent majority; attacks average {plan.eot} or "
           "more draws per gradient (EOT)"] * random
        + ladder_notes(attacked) + threat_notes(norm), norm=norm)


def _climb(rungs: list[Rung], x: Tensor, y: Tensor, correct: Tensor, judge: Any,
           confirm: Any, batch_size: int, device: torch.device, execution: Execution,
           progress: bool, screen: int | None, seed: int, saved: AuditState | None,
           norm: str = "Linf"
           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Tensor]:
    """Run the rungs in order, each on the points still robust (the baseline on every
    clean-correct point, so the paired comparison is on the same points); a screened
    rung first on a seeded random sample of ``screen`` of them, on the rest only if it
    breaks one there. A rung finished in ``saved`` is loaded, not run; one that finishes
    here is saved there with the per-point results so far."""
    n = len(x)
    robust = correct.clone()
    broken_by: list[str | None] = [None] * n
    margin = torch.full((n,), -math.inf)
    linf = torch.full((n,), math.nan)
    baseline = correct.clone()
    rows = []

    def attack(rung: Rung, todo: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Attack the points ``todo``; book what it breaks; its breaks on ``todo``."""
        hit, gaps, sizes, adv, fw, bw, secs = run_attack(
            rung.attack, rung.model, x[todo], y[todo], judge, batch_size, device, execution,
            rung.name, progress, norm)
        if confirm is not None:
            hit = confirm(adv, y[todo], hit)
        newly = hit & robust[todo]
        for i in todo[newly].tolist():
            broken_by[i] = rung.name
        # the margin at the breaking adversarial; for a robust point, its closest call
        keep = newly | (robust[todo] & (gaps > margin[todo]))
        margin[todo[keep]] = gaps[keep]
        linf[todo[newly]] = sizes[newly]
        if rung.kind == "baseline":
            baseline[todo] = ~hit
        robust[todo[newly]] = False
        return hit, {"forwards": fw, "backwards": bw, "seconds": secs}

    with tqdm(total=len(rungs), desc="audit", unit="rung", disable=not progress,
              dynamic_ncols=True) as bar:
        for number, rung in enumerate(rungs):
            step = f"{number:02d}-{rung.name}"
            done = saved and saved.load(step)
            if done is not None:
                robust, baseline = torch.tensor(done["robust"]), torch.tensor(done["baseline"])
                margin, linf = torch.tensor(done["margin"]), torch.tensor(done["linf"])
                broken_by = done["broken_by"]
                rows.append(done["row"])
                bar.update(1)
                continue
            rng_for(seed, step)
            todo = (correct if rung.kind == "baseline" else robust).nonzero().squeeze(1)
            bar.set_postfix_str(rung.name)
            before = int(robust.sum())
            sampled = None
            if rung.screened and screen is not None and len(todo) > screen:
                order = torch.randperm(len(todo), generator=torch.Generator().manual_seed(seed))
                first, rest = todo[order[:screen]], todo[order[screen:]]
                hit, cost = attack(rung, first)
                sampled = {"sample": screen, "broken": int(hit.sum()),
                           "escalated": bool(hit.any())}
                if hit.any():
                    more_hit, more = attack(rung, rest)
                    hit = torch.cat([hit, more_hit])
                    cost = {k: cost[k] + more[k] for k in cost}
            else:
                hit, cost = attack(rung, todo)
            rows.append({"name": rung.name, "kind": rung.kind, "description": rung.description,
                         "params": rung.attack.params(), "attacked": len(hit),
                         "broken": before - int(robust.sum()),
                         "robust_accuracy": float(robust.double().mean()),
                         "alone_robust_accuracy": (float((correct.sum() - hit.sum()) / n)
                                                   if rung.kind == "baseline" else None),
                         "screened": sampled, **cost})
            if saved is not None:
                saved.save(step, {"row": rows[-1], "robust": robust.tolist(),
                                  "baseline": baseline.tolist(), "margin": margin.tolist(),
                                  "linf": linf.tolist(), "broken_by": broken_by})
            bar.update(1)
    ledger = [{"index": i, "label": int(y[i]), "clean_correct": bool(correct[i]),
               "broken_by": broken_by[i],
               "margin": None if not correct[i] or math.isinf(margin[i]) else float(margin[i]),
               # the breaking adversarial's size in the norm, under its name ("linf", ...)
               norm.lower(): None if math.isnan(linf[i]) else float(linf[i])}
              for i in range(n)]
    return ledger, rows, baseline


def _curve(model: nn.Module, x: Tensor, y: Tensor, eps: float, plan: Budget, seed: int,
           draws: int, classes: int, judge: Any, batch_size: int, device: torch.device,
           execution: Execution, progress: bool, norm: str = "Linf"
           ) -> list[dict[str, Any]]:
    """Robust accuracy of the cheap cascade (APGD-CE, then APGD-DLR) on the model as it
    is, over eps/4 ... a large eps (``threat.curve_radii``): the curve AutoAttack's and
    Carlini's checks read."""
    points = curve_radii(eps, norm, x[0].numel())
    correct = ~judgment.fooled(model, x.to(device), y.to(device), draws, clean=True).cpu()
    rows = []
    for e in points:
        robust = correct.clone()
        for attack in curve_attacks(e, plan, seed, draws, classes, norm, rejects(model)):
            todo = robust.nonzero().squeeze(1)
            if len(todo) == 0:
                break
            hit = run_attack(attack, model, x[todo], y[todo], judge, batch_size, device,
                             execution, f"eps {e:.3g}", progress)[0]
            robust[todo[hit]] = False
        rows.append({"eps": e, "robust_accuracy": float(robust.double().mean()),
                     "n": len(x)})
    return rows


def _threshold(n: int) -> int:
    """Points a check needs before it fails: enough for McNemar to see them, and at
    least 1% of the points."""
    return max(smallest_significant_count(), math.ceil(0.01 * n))


def _checks(rows: list[dict[str, Any]], ledger: list[dict[str, Any]],
            curve: list[dict[str, Any]], n: int) -> list[Check]:
    """AutoAttack's and Carlini et al.'s sanity checks on what the ladder measured."""
    checks = []
    if curve:
        m = curve[0]["n"]
        slack = max(0.02, 2 / m)
        rises = [(a["eps"], b["eps"], b["robust_accuracy"] - a["robust_accuracy"])
                 for a, b in itertools.pairwise(curve)]
        worst = max(rises, key=lambda r: r[2], default=(0, 0, 0.0))
        checks.append(Check(
            "eps-monotone", worst[2] <= slack, worst[2],
            f"robust accuracy never rises with eps by more than {slack:.1%}"
            if worst[2] <= slack else
            f"robust accuracy rises by {worst[2]:.1%} from eps {worst[0]:.3g} to "
            f"{worst[1]:.3g}: the attack does not find what a larger ball contains"))
        top = curve[-1]
        checks.append(Check(
            "large-eps", top["robust_accuracy"] <= LARGE_EPS_CEILING, top["robust_accuracy"],
            f"at eps {top['eps']:.3g} the gradient attacks leave {top['robust_accuracy']:.1%} "
            f"robust (should be about 0, at most {LARGE_EPS_CEILING:.0%})"))
    need = _threshold(n)
    kinds = {r["name"]: r["kind"] for r in rows}
    black = sum(1 for p in ledger if kinds.get(p["broken_by"]) in ("black-box", "transfer"))
    checks.append(Check(
        "black-box-not-stronger", black < need, float(black),
        f"{black} point(s) that every gradient attack before them left robust were broken "
        f"by Square or transfer (fails at {need})"))
    more = sum(1 for p in ledger if kinds.get(p["broken_by"]) == "check")
    checks.append(Check(
        "more-steps-converged", more < need, float(more),
        f"{more} point(s) fell only to twice the steps and more restarts (fails at {need})"))
    if "detector" in kinds.values():  # the model rejects: the adaptive detector rungs ran
        held = sum(1 for p in ledger if kinds.get(p["broken_by"]) == "detector")
        checks.append(Check(
            "detector-adaptive", held < need, float(held),
            f"the defense held {held} point(s) against the paper's PGD and the ladder's "
            f"CE/DLR rungs that the adaptive detector loss (apgd-detector, apgd-t-detector) "
            f"then broke (fails at {need})"))
    # each check's text ends with its section of the docs, as AutoAttack's flags doc does
    return [Check(c.name, c.passed, c.value, f"{c.detail}; see {CHECKS_DOC}#{c.name}")
            for c in checks]


def _verdict(gap: float, p_value: float, checks: list[Check], n: int, gap_threshold: float,
             alpha: float, closed_by: str | None) -> tuple[str, list[str]]:
    reasons = []
    if gap >= gap_threshold and p_value < alpha:
        reasons.append(f"the paper's attack (PGD on CE) overstates robust accuracy by "
                       f"{100 * gap:.1f} points (McNemar p = {p_value:.2g}); "
                       f"{closed_by} closed most of the gap")
    reasons += [f"sanity check {c.name} failed: {c.detail}" for c in checks if not c.passed]
    if reasons:
        return "masking", reasons
    if gap_threshold * n < smallest_significant_count(alpha):
        return "inconclusive", [
            f"{n} points are too few: a gap of {100 * gap_threshold:.0f} points could not be "
            f"significant (McNemar needs {smallest_significant_count(alpha)} discordant "
            "points)"]
    return "no-masking-detected", [
        f"the ladder lowers robust accuracy by {100 * gap:.1f} points "
        f"(McNemar p = {p_value:.2g}), under the {100 * gap_threshold:.0f}-point threshold, "
        "and every sanity check passed"]
