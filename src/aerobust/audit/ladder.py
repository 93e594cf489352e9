"""The attack ladder: budgets, the rungs an audit climbs, and how one rung is run.

Cheapest first, each rung attacks only the points every earlier rung left robust (as
AutoAttack cascades), so a model that breaks early costs little; the adaptive rungs
(transfer from the classifier alone, BPDA through flagged stages, EOT on a random
model) are added only where the probes say they apply, and two where the model says
so: the adaptive detector loss where it rejects inputs (``aerobust.rejection``), and
its differentiable surrogate where it offers one (``aerobust.surrogate``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from aerobust.attacks import APGD, FAB, PGD, Attack, Square
from aerobust.attacks.base import attack_mode
from aerobust.attacks.norms import size
from aerobust.attacks.runner import Execution
from aerobust.audit.stages import Stages
from aerobust.rejection import rejects
from aerobust.surrogate import descriptions, with_surrogates


@dataclass(frozen=True)
class Budget:
    """Steps, restarts and queries of every rung. ``standard`` runs what AutoAttack's
    standard version runs but FAB-T (APGD-CE and APGD-T at 100 steps, 9 target classes,
    Square with 5,000 queries) plus PGD-40, APGD-DLR, the adaptive rungs and a check
    with twice the steps.

    ``screen``: the screened rungs first run on a random sample of this many still-robust
    points, and on the rest only if they break one there. They are the ones that, on a
    model that does not mask gradients, break next to nothing after the rungs before
    them yet cost the most: Square, APGD-T's targets beyond the top ``targets`` (the
    ``screened_targets`` after them) and the more-steps check. A rung that would break
    a share ``r`` of the remaining points escapes a sample of ``m`` with probability
    ``(1 - r) ** m``: 5% for r = 3% at m = 100. ``None`` runs them on every point, as
    AutoAttack does.

    ``fab``: whether FAB-T (``fab_targets`` target classes, ``fab_steps`` steps, screened)
    is a rung by default (the audit's ``fab=`` decides otherwise): ``thorough`` runs it,
    as AutoAttack's standard version does."""

    name: str
    baseline_steps: int  # PGD on CE, the paper's attack
    apgd_steps: int
    restarts: int
    targets: int  # APGD-T's top target classes, on every robust point
    screened_targets: int  # APGD-T's next target classes, screened
    queries: int  # Square
    eot: int  # draws per forward on a random model
    more_restarts: int  # the convergence check: APGD-DLR, twice the steps
    curve_steps: int  # APGD-CE and APGD-DLR per point of the eps curve
    curve_n: int  # points of the eps curve (the first ones)
    probe_n: int  # points the probes look at
    screen: int | None  # sample size for screened rungs; None: no screening
    fab: bool = False  # FAB-T a rung by default
    fab_targets: int = 9  # FAB-T's target classes (AutoAttack's 9)
    fab_steps: int = 100  # FAB-T's steps (AutoAttack's 100)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BUDGETS = {
    "quick": Budget("quick", baseline_steps=40, apgd_steps=50, restarts=1, targets=3,
                    screened_targets=0,
                    queries=500, eot=8, more_restarts=1, curve_steps=20, curve_n=50,
                    probe_n=32, screen=50, fab_targets=3, fab_steps=50),
    "standard": Budget("standard", baseline_steps=40, apgd_steps=100, restarts=1, targets=3,
                       screened_targets=6,
                       queries=5000, eot=20, more_restarts=2, curve_steps=25, curve_n=200,
                       probe_n=64, screen=100),
    "thorough": Budget("thorough", baseline_steps=40, apgd_steps=200, restarts=5, targets=9,
                       screened_targets=0,
                       queries=10000, eot=40, more_restarts=5, curve_steps=50, curve_n=500,
                       probe_n=128, screen=None, fab=True),
}


@dataclass(frozen=True)
class Rung:
    """One attack of the ladder: run ``attack`` on ``model`` (the audited model, or a
    variant of it: BPDA stages, the classifier alone for transfer) and judge every
    adversarial on the audited model itself."""

    name: str
    kind: str  # baseline, white-box, detector, black-box, transfer or check: read by the checks
    attack: Attack
    model: nn.Module
    description: str
    screened: bool = False  # first on a sample of the robust points (Budget.screen)


def build_rungs(model: nn.Module, stages: Stages, eps: float, budget: Budget, seed: int,
                flagged: list[str], random: bool, norm: str = "Linf",
                fab: bool | None = None) -> list[Rung]:
    """The rungs for this model in the threat model ``norm``, in the order they run
    (baseline first); FAB-T among them where ``fab`` says (None: the budget's default).
    In L1 there is no Square rung (no L1 variant).

    A model that rejects gets the adaptive detector rungs right after the CE/DLR ones
    (``detector_rungs``), and its BPDA, EOT and surrogate rungs attack the detector
    margin too. A model that offers a surrogate gets APGD through it, and the strongest
    rungs (APGD-T, FAB-T, the more-steps check) step through it."""
    b = budget
    eot = b.eot if random else 1
    ball = "" if norm == "Linf" else f" in {norm}"
    rejecting = rejects(model)
    losses = ("ce", "dlr", "detector-margin") if rejecting else ("ce", "dlr")
    rungs = [Rung("pgd-ce", "baseline", PGD(eps=eps, steps=b.baseline_steps, seed=seed,
                                            norm=norm), model,
                  f"PGD-{b.baseline_steps} on cross-entropy{ball}, the paper's attack"),
             Rung("apgd-ce", "white-box", APGD(eps=eps, steps=b.apgd_steps, restarts=b.restarts,
                                                seed=seed, norm=norm), model,
                  f"APGD-CE{ball}, {b.apgd_steps} steps x {b.restarts} restart(s)"),
             Rung("apgd-dlr", "white-box", APGD(eps=eps, steps=b.apgd_steps, loss="dlr",
                                                 restarts=b.restarts, seed=seed, norm=norm),
                  model, f"APGD on the DLR loss{ball} (invariant to scaling the logits)")]
    if rejecting:
        rungs += detector_rungs(model, eps, b, seed, eot, norm)
    if stages.front:
        rungs.append(Rung(
            "transfer", "transfer",
            PGD(eps=eps, steps=b.apgd_steps, keep="last", seed=seed, norm=norm),
            stages.classifier,
            f"PGD-{b.apgd_steps}{ball} (final iterate) on the classifier with "
            f"{', '.join(stages.names)} removed, scored on the whole model"))
    per_loss = functools.partial(_per_loss, losses=losses, eps=eps, b=b, seed=seed, eot=eot,
                                 norm=norm)
    with_eot = f", EOT over {eot} draws" if random else ""
    if flagged:
        rungs += per_loss("bpda", stages.with_bpda(flagged), "with an identity backward pass "
                          f"(BPDA) through {', '.join(flagged)}{with_eot}")
    if random:
        rungs += per_loss("eot", model, f"with gradients averaged over {eot} draws (EOT)")
    if random:
        # The attack an adaptive attacker writes first against a random defense: fixed
        # steps, final iterates, many draws per gradient (Athalye et al. 2018). APGD's
        # step-size rule reads a noisy loss; this does not read the loss at all.
        steps, draws = max(100, b.apgd_steps), max(16, eot)
        rungs.append(Rung(
            "eot-pgd", "white-box",
            PGD(eps=eps, steps=steps, step_size=eps / 10, restarts=2, keep="last", seed=seed,
                eot=draws, norm=norm), model,
            f"PGD-{steps}{ball} on cross-entropy, fixed step eps/10, gradients averaged over "
            f"{draws} draws (EOT), 2 restarts, final iterates"))
    soft = with_surrogates(model)
    if soft is not None:
        rungs += per_loss("surrogate", soft, "through the model's differentiable surrogate "
                          f"({'; '.join(descriptions(model))}){with_eot}")
    strongest = stages.with_bpda(flagged) if flagged else model
    strongest = with_surrogates(strongest) or strongest
    how = (" through BPDA" if flagged else "") + (" through the surrogate" if soft else "") \
        + (" with EOT" if random else "")
    rungs.append(Rung(
        "apgd-t", "white-box",
        APGD(eps=eps, steps=b.apgd_steps, loss="dlr", targeted=True, n_target_classes=b.targets,
             restarts=b.restarts, seed=seed, eot=eot, norm=norm),
        strongest, f"APGD-T (targeted DLR){ball} over the top {b.targets} other classes{how}"))
    if b.screened_targets:
        last = b.targets + b.screened_targets
        rungs.append(Rung(
            "apgd-t-rest", "white-box",
            APGD(eps=eps, steps=b.apgd_steps, loss="dlr", targeted=True,
                 n_target_classes=b.screened_targets, first_target=b.targets,
                 restarts=b.restarts, seed=seed, eot=eot, norm=norm),
            strongest, f"APGD-T{ball} over the classes ranked {b.targets + 1}-{last}{how} "
            f"(with the top {b.targets}, AutoAttack's {last} targets)", screened=True))
    if b.fab if fab is None else fab:
        rungs.append(Rung(
            "fab-t", "white-box",
            FAB(eps=eps, norm=norm, n_target_classes=b.fab_targets, steps=b.fab_steps,
                seed=seed, eot=eot), strongest,
            f"FAB-T{ball}, minimum-norm steps onto the linearised boundary of each of the top "
            f"{b.fab_targets} other classes, {b.fab_steps} steps{how}", screened=True))
    if norm != "L1":
        # One draw per query even on a random model (EOT would multiply the budget):
        # the random search is noisier, and the judge still counts a majority of draws.
        rungs.append(Rung("square", "black-box",
                          Square(eps=eps, queries=b.queries, seed=seed, norm=norm), model,
                          f"Square{ball}, {b.queries} queries (score-based, no gradients)",
                          screened=True))
    rungs.append(Rung(
        "apgd-dlr-more", "check",
        APGD(eps=eps, steps=2 * b.apgd_steps, loss="dlr", restarts=b.more_restarts,
             seed=seed + 1, eot=eot, norm=norm), strongest,
        f"APGD-DLR{ball} with twice the steps ({2 * b.apgd_steps}) and {b.more_restarts} "
        "restart(s) from other random starts: does more effort still lower it?",
        screened=True))
    return rungs


# A loss's name in the rungs' names: "detector-margin" is the adaptive detector loss
_SHORT = {"ce": "ce", "dlr": "dlr", "detector-margin": "detector"}


def _per_loss(prefix: str, model: nn.Module, what: str, losses: tuple[str, ...], eps: float,
              b: Budget, seed: int, eot: int, norm: str) -> list[Rung]:
    """``{prefix}-apgd-{loss}``: APGD on each of ``losses`` against ``model``, ``what``
    saying how that model differs from the audited one."""
    ball = "" if norm == "Linf" else f" in {norm}"
    return [Rung(f"{prefix}-apgd-{_SHORT[loss]}", "white-box",
                 APGD(eps=eps, steps=b.apgd_steps, loss=loss, restarts=b.restarts, seed=seed,
                      eot=eot, norm=norm), model, f"APGD-{_SHORT[loss].upper()}{ball} {what}")
            for loss in losses]


def detector_rungs(model: nn.Module, eps: float, b: Budget, seed: int, eot: int,
                   norm: str = "Linf") -> list[Rung]:
    """The adaptive attack on a model that rejects (Carlini & Wagner 2017 on MagNet):
    APGD and APGD-T on ``rejection.detector_margin``, which wants a wrong class above
    both the true one and the reject logit, so it never gains by being rejected, as CE
    and DLR do. Kind ``detector``: what they break, the CE/DLR rungs before them left
    robust (the sanity check ``detector-adaptive``)."""
    ball = "" if norm == "Linf" else f" in {norm}"
    draws = f", EOT over {eot} draws" if eot > 1 else ""
    return [Rung("apgd-detector", "detector",
                 APGD(eps=eps, steps=b.apgd_steps, loss="detector-margin", restarts=b.restarts,
                      seed=seed, eot=eot, norm=norm), model,
                 f"APGD{ball} on the adaptive detector loss (a wrong class above both the "
                 f"true class and the reject logit), {b.apgd_steps} steps{draws}"),
            Rung("apgd-t-detector", "detector",
                 APGD(eps=eps, steps=b.apgd_steps, loss="detector-margin", targeted=True,
                      n_target_classes=b.targets, restarts=b.restarts, seed=seed, eot=eot,
                      norm=norm), model,
                 f"APGD-T{ball} on the adaptive detector loss over the top {b.targets} other "
                 f"classes (never the reject logit){draws}")]


def ladder_notes(model: nn.Module) -> list[str]:
    """What the record says about a model the ladder attacks in its own way."""
    said = []
    if rejects(model):
        said.append("the model rejects inputs (aerobust.rejection): a rejected adversarial "
                    "is a held point, a rejected clean input an error; the ladder adds APGD "
                    "and APGD-T on the adaptive detector loss (apgd-detector, "
                    "apgd-t-detector; the BPDA, EOT and surrogate rungs attack it too where "
                    "they run), and so does the eps curve")
    said += [f"differentiable surrogate: {d}; the surrogate-* rungs, APGD-T and the checks "
             "step through it, every adversarial judged on the model itself"
             for d in descriptions(model)]
    return said


def curve_attacks(eps: float, budget: Budget, seed: int, eot: int, classes: int,
                  norm: str = "Linf", rejecting: bool = False) -> list[Attack]:
    """The cheap cascade behind the robust-accuracy-vs-eps curve; for a model that
    rejects, APGD on the adaptive detector loss last (at a large eps an attack that
    ignores the detector is rejected, which says nothing of the attack's strength)."""
    losses = ("ce", "dlr")[: 1 + (classes >= 3)] + ("detector-margin",) * rejecting
    return [APGD(eps=eps, steps=budget.curve_steps, loss=loss, seed=seed, eot=eot, norm=norm)
            for loss in losses]


Judge = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def run_attack(attack: Attack, model: nn.Module, x: Tensor, y: Tensor, judge: Judge,
               batch_size: int, device: torch.device, execution: Execution, desc: str,
               progress: bool, norm: str = "Linf"
               ) -> tuple[Tensor, Tensor, Tensor, Tensor, int, int, float]:
    """``attack`` on ``model`` over ``(x, y)`` in batches, under ``execution``; every
    adversarial judged by ``judge`` (the audited model). Returns fooled, margin and size
    in ``norm`` per point and the adversarials (on the CPU), the attack's passes and its
    seconds."""
    fooled, margins, sizes, advs = [], [], [], []
    forwards = backwards = 0
    start = time.perf_counter()
    with attack_mode(model), tqdm(total=len(x), desc=desc, unit="pt", leave=False,
                                  disable=not progress, dynamic_ncols=True) as bar:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            result = attack(model, xb, yb, execution=execution)
            forwards += result.forwards
            backwards += result.backwards
            hit, gap = judge(result.x_adv, yb)
            fooled.append(hit.cpu())
            margins.append(gap.cpu())
            sizes.append(result.linf.cpu() if norm == "Linf" else
                        size(result.x_adv - xb, norm).cpu())
            advs.append(result.x_adv.cpu())
            bar.update(len(xb))
    seconds = time.perf_counter() - start
    if not fooled:
        empty = torch.zeros(0)
        return empty.bool(), empty, empty, x[:0], 0, 0, seconds
    return (torch.cat(fooled), torch.cat(margins), torch.cat(sizes), torch.cat(advs), forwards,
            backwards, seconds)
