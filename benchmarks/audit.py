"""Benchmark: ``aerobust.audit`` beside torchattacks' AutoAttack and our PGD-40.

Why: the audit must find at least what AutoAttack finds (its robust accuracy at most
AutoAttack's and PGD-40's plus 0.5 points) at a third of AutoAttack's time or less. On
the real MNIST split (8,000 train / 2,000 test, made from the official test set by
``aerobust.data.mnist.write_test_split_npz``), the first ``--n`` test images, three
models trained once through the run store (C: LeNet5; AE-C: the conv autoencoder in
front of C; advC: LeNet5 with Madry PGD adversarial training) and eps 0.3 and 0.1, it
runs side by side in one process:

1. ``aerobust.audit(model, x, y, eps, budget="standard")``, the attack ladder;
2. torchattacks' ``AutoAttack(model, norm="Linf", eps=eps, version="standard",
   n_classes=10, seed=0)``, timed to a per-point robust mask (a clean forward, the
   attack, a forward on its output);
3. our PGD-40 (``aerobust.attacks.PGD(eps=eps, steps=40)`` through ``evaluate``).

All three get the same batches of ``--batch-size`` images. Robust = correct on the clean
image and on the adversarial one, for all three. Per point it also counts the images
AutoAttack broke and the audit did not, and the other way round.

    python benchmarks/audit.py --threads 1            # n=1000, writes results/audit/
    python benchmarks/audit.py --n 100 --skip-audit   # AutoAttack and PGD-40 only
    python benchmarks/audit.py --models advC --eps 0.3 --n 200 --out /tmp/audit-check

Where the MNIST files (``--data-dir``, default ``../shared/data/mnist``) and the split
(``--split``) are both absent it says so and exits 0. torchattacks is a benchmark-only
dependency: ``pip install --no-deps torchattacks`` (exit 2 with that hint without it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
import torch
from torch import Tensor, nn

from aerobust import atomic
from aerobust.allocator import retain_freed_memory
from aerobust.attacks import PGD, evaluate
from aerobust.errors import DataError, UserError
from aerobust.training import RunStore

RESULTS = harness.RESULTS_ROOT / "audit"
DEFAULT_DATA_DIR = harness.SHARED_MNIST
# The path the repository's other real-data runs use (docs/results.md, docs/results/mnist-8k2k):
# a run is keyed by the data's checksum and named after the file, so the same file name
# lets this benchmark and `aerobust reproduce` share trained models.
DEFAULT_SPLIT = Path("/tmp/real/mnist-8k2k.npz")
EPSILONS = (0.3, 0.1)
MODELS = ("C", "AE-C", "advC")
METHODS = ("audit", "autoattack", "pgd40")
PGD_STEPS = 40
ACC_SLACK = 0.005  # the audit's robust accuracy may exceed min(AutoAttack, PGD-40) by 0.5 points
SPEED_TARGET = 3.0  # AutoAttack seconds / audit seconds
SAMPLE_INDICES = 20  # disagreeing indices listed per cell in the JSON


# --------------------------------------------------------------------------- data


# ------------------------------------------------------------------------- models


def clean_correct(model: nn.Module, x: Tensor, y: Tensor, batch_size: int) -> Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]).argmax(dim=1) == y[i:i + batch_size]
                          for i in range(0, len(x), batch_size)])


# ------------------------------------------------------------------ the three runs


def run_audit(model: nn.Module, x: Tensor, y: Tensor, eps: float,
              batch_size: int) -> dict[str, Any]:
    """``aerobust.audit`` as a user calls it; the per-point robust mask from its ledger
    (robust: correct clean and broken by no rung)."""
    from aerobust.audit import audit

    a = audit(model, x, y, eps, budget="standard", seed=0, batch_size=batch_size,
              progress=False)
    robust = torch.zeros(len(x), dtype=torch.bool)
    broken_by: dict[str, int] = {}
    for entry in a.ledger:
        if entry["clean_correct"] and entry["broken_by"] is None:
            robust[int(entry["index"])] = True
        elif entry["clean_correct"]:
            broken_by[entry["broken_by"]] = broken_by.get(entry["broken_by"], 0) + 1
    details = {k: v for k, v in a.to_dict().items()
               if k not in ("ledger", "rungs", "verdict", "robust_accuracy", "seconds",
                            "baseline_robust_accuracy", "clean_accuracy")}
    return {"robust": robust, "robust_accuracy": float(a.robust_accuracy),
            "extra": {"verdict": a.verdict,
                      "baseline_robust_accuracy": float(a.baseline_robust_accuracy),
                      "clean_accuracy": float(a.clean_accuracy),
                      "audit_seconds": float(a.seconds), "rungs": json_safe(a.rungs),
                      "broken_by": broken_by, "details": json_safe(details)}}


def json_safe(value: Any) -> Any:
    """``value`` as JSON takes it (anything it cannot hold, such as a callable loss,
    as its ``str``)."""
    return json.loads(json.dumps(value, default=str))


def run_autoattack(model: nn.Module, x: Tensor, y: Tensor, eps: float,
                   batch_size: int) -> dict[str, Any]:
    """torchattacks' standard AutoAttack batch by batch, to a per-point robust mask: a
    clean forward, the attack, one no-grad forward on its output (what a user adds)."""
    import torchattacks

    attack = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard",
                                     n_classes=10, seed=0)
    subs = time_sub_attacks(attack)
    robust, linf = [], []
    for begin in range(0, len(x), batch_size):
        xb, yb = x[begin:begin + batch_size], y[begin:begin + batch_size]
        with torch.no_grad():
            clean = model(xb).argmax(dim=1) == yb
        adv = attack(xb, yb)
        with torch.no_grad():
            robust.append(clean & (model(adv).argmax(dim=1) == yb))
        linf.append((adv - xb).flatten(1).abs().amax(dim=1))
    mask = torch.cat(robust)
    return {"robust": mask, "robust_accuracy": mask.double().mean().item(),
            "extra": {"max_linf": torch.cat(linf).max().item(), "sub_attacks": subs}}


def time_sub_attacks(attack: Any) -> list[dict[str, Any]]:
    """Wrap each attack of torchattacks' AutoAttack cascade so that its inputs and wall
    seconds add up over the batches (filled in as the attack runs; costs two clock reads
    per call): where AutoAttack's time goes."""
    subs: list[dict[str, Any]] = []
    for sub in attack._autoattack.attacks:
        name = {"APGDT": "APGD-T"}.get(type(sub).__name__, type(sub).__name__)
        if name == "APGD":
            name += f"-{sub.loss.upper()}"
        elif name == "FAB" and sub.multi_targeted:
            name += "-T"
        stats: dict[str, Any] = {"name": name, "inputs": 0, "seconds": 0.0}
        subs.append(stats)

        def timed(images: Tensor, labels: Tensor, forward: Any = sub.forward,
                  stats: dict[str, Any] = stats) -> Tensor:
            start = time.perf_counter()
            out = forward(images, labels)
            stats["seconds"] += time.perf_counter() - start
            stats["inputs"] += len(images)
            return out

        sub.forward = timed
    return subs


def run_pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float,
            batch_size: int) -> dict[str, Any]:
    """Our PGD-40 (CE, random start, step 2.5*eps/40) through ``evaluate``; the per-point
    mask from a forward on the adversarials it keeps (checked against its accuracy)."""
    ev = evaluate(model, x, y, PGD(eps=eps, steps=PGD_STEPS), batch_size=batch_size,
                  keep_adversarials=True)
    return {"robust_accuracy": ev.robust_accuracy, "adversarials": ev.adversarials,
            "extra": {"forwards": ev.forwards, "backwards": ev.backwards,
                      "params": ev.params, "execution": ev.execution}}


def pgd_mask(model: nn.Module, x: Tensor, y: Tensor, result: dict[str, Any],
             clean: Tensor, batch_size: int) -> None:
    """Fill in PGD's per-point robust mask, outside the timed call."""
    adv = result.pop("adversarials")
    result["robust"] = clean & clean_correct(model, adv, y, batch_size)
    got = result["robust"].double().mean().item()
    if abs(got - result["robust_accuracy"]) > 1e-9:
        raise RuntimeError(f"PGD-40: per-point mask gives {got}, evaluate "
                           f"{result['robust_accuracy']}")


def timed_cell(model: nn.Module, x: Tensor, y: Tensor, eps: float, batch_size: int,
               methods: tuple[str, ...], rounds: int, first: int,
               log: Callable[[str], None]) -> dict[str, Any]:
    """Each method ``rounds`` times, interleaved; the order rotates by ``first`` (so
    across cells each method goes first, middle and last) and reverses every round.
    Results from the first round (all are deterministic: seed 0), medians of times."""
    their_model = harness.frozen_copy(model)
    calls: dict[str, Callable[[], dict[str, Any]]] = {
        "audit": lambda: run_audit(model, x, y, eps, batch_size),
        "autoattack": lambda: run_autoattack(their_model, x, y, eps, batch_size),
        "pgd40": lambda: run_pgd(model, x, y, eps, batch_size),
    }
    order = [m for m in METHODS if m in methods]
    order = order[first % len(order):] + order[:first % len(order)]
    seconds: dict[str, list[float]] = {m: [] for m in order}
    results: dict[str, dict[str, Any]] = {}
    for round_ in range(rounds):
        for method in order if round_ % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            out = calls[method]()
            seconds[method].append(time.perf_counter() - start)
            results.setdefault(method, out)
            log(f"    {method}: {seconds[method][-1]:.1f} s, robust "
                f"{harness.pct(out['robust_accuracy'])}")
    clean = clean_correct(model, x, y, batch_size)
    if "pgd40" in results:
        pgd_mask(model, x, y, results["pgd40"], clean, batch_size)
    cell: dict[str, Any] = {"eps": eps, "n": len(x), "order": order,
                            "clean_accuracy": clean.double().mean().item(), "methods": {}}
    for method, out in results.items():
        cell["methods"][method] = {
            "robust_accuracy": out["robust_accuracy"], "seconds": seconds[method],
            "median_seconds": statistics.median(seconds[method]), **out["extra"]}
    cell.update(compare(results, clean))
    return cell


def compare(results: dict[str, dict[str, Any]], clean: Tensor) -> dict[str, Any]:
    """Per-point agreement between each pair (points broken by one, robust under the
    other), and the targets where the audit ran."""
    out: dict[str, Any] = {"agreement": {}}
    names = [m for m in METHODS if m in results]  # fixed pairs, whatever the run order
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ra, rb = results[a]["robust"], results[b]["robust"]
            a_only = (clean & ~ra & rb).nonzero().flatten().tolist()  # a broke, b did not
            b_only = (clean & ra & ~rb).nonzero().flatten().tolist()
            out["agreement"][f"{a} vs {b}"] = {
                f"broken_by_{a}_only": len(a_only), f"broken_by_{b}_only": len(b_only),
                f"{a}_only_indices": a_only[:SAMPLE_INDICES],
                f"{b}_only_indices": b_only[:SAMPLE_INDICES]}
    return out


def targets(cell: dict[str, Any]) -> dict[str, Any] | None:
    """The issue's two targets for one cell (None without all three methods)."""
    m = cell["methods"]
    if not all(k in m for k in METHODS):
        return None
    ref = min(m["autoattack"]["robust_accuracy"], m["pgd40"]["robust_accuracy"])
    ratio = m["autoattack"]["median_seconds"] / m["audit"]["median_seconds"]
    acc_ok = m["audit"]["robust_accuracy"] <= ref + ACC_SLACK + 1e-9
    return {"speed_ratio": ratio, "accuracy_met": acc_ok, "speed_met": ratio >= SPEED_TARGET,
            "met": acc_ok and ratio >= SPEED_TARGET, "reference_robust_accuracy": ref}


# ------------------------------------------------------------------------ report


def table(cells: list[tuple[str, dict[str, Any]]]) -> list[str]:
    lines = [
        "| model | eps | clean | audit robust | AutoAttack robust | PGD-40 robust "
        "| audit s | AutoAttack s | PGD-40 s | AA s / audit s | AA-only / audit-only "
        "| verdict | acc target | speed target |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| --- | --- | --- |",
    ]
    for model, cell in cells:
        m = cell["methods"]

        def acc(k: str, m: dict[str, Any] = m) -> str:
            return harness.pct(m[k]["robust_accuracy"]) if k in m else "-"

        def sec(k: str, m: dict[str, Any] = m) -> str:
            return f"{m[k]['median_seconds']:.1f}" if k in m else "-"

        t = cell.get("targets")
        agree = cell["agreement"].get("audit vs autoattack")
        ratio = f"{t['speed_ratio']:.2f}x" if t else "-"
        disagree = (f"{agree['broken_by_autoattack_only']} / {agree['broken_by_audit_only']}"
                    if agree else "-")
        verdict = m["audit"]["verdict"] if "audit" in m else "-"
        acc_met = ("yes" if t["accuracy_met"] else "**NO**") if t else "-"
        speed_met = ("yes" if t["speed_met"] else "**NO**") if t else "-"
        lines.append(
            f"| {model} | {cell['eps']:g} | {harness.pct(cell['clean_accuracy'])} | {acc('audit')} "
            f"| {acc('autoattack')} | {acc('pgd40')} | {sec('audit')} | {sec('autoattack')} "
            f"| {sec('pgd40')} | {ratio} | {disagree} | {verdict} | {acc_met} | {speed_met} |")
    return lines


def detail_lines(cells: list[tuple[str, dict[str, Any]]]) -> list[str]:
    lines = []
    for model, cell in cells:
        m = cell["methods"]
        parts = []
        if "audit" in m:
            rungs = "; ".join(
                f"{r.get('name')}: {r.get('attacked')} attacked"
                + (f" (screened: a sample of {r['screened']['sample']} broke "
                   f"{r['screened']['broken']})" if r.get("screened") else "")
                + f", {r.get('broken')} broken, {r.get('seconds', 0.0):.1f} s"
                for r in m["audit"]["rungs"])
            baseline = harness.pct(m["audit"]["baseline_robust_accuracy"])
            parts.append(f"audit baseline (PGD-40 CE) {baseline}, rungs: {rungs}")
        if "autoattack" in m:
            parts.append("AutoAttack's cascade: " + ", ".join(
                f"{a['name']} {a['inputs']} points {a['seconds']:.1f} s"
                for a in m["autoattack"]["sub_attacks"]))
        if "pgd40" in m:
            parts.append(f"PGD-40 {m['pgd40']['forwards']} forwards / "
                         f"{m['pgd40']['backwards']} backwards")
        for pair, a in cell["agreement"].items():
            x, y = pair.split(" vs ")
            parts.append(f"{pair}: {a[f'broken_by_{x}_only']} broken by {x} only, "
                         f"{a[f'broken_by_{y}_only']} by {y} only")
        lines.append(f"- {model}, eps {cell['eps']:g} (order {', '.join(cell['order'])}): "
                     + "; ".join(parts) + ".")
    return lines


AUTOATTACK_TEXT = (
    "**What torchattacks' AutoAttack runs** (3.5.1, `version=\"standard\"`, read from its "
    "source): a `MultiAttack` of APGD-CE, APGD-T, FAB-T and Square, each with one restart "
    "and the same seed. `MultiAttack` cascades: each attack runs only on the points every "
    "earlier one left correctly classified (points misclassified clean drop out after the "
    "first), and each attack also attacks only its still-correct inputs. Settings: "
    "APGD-CE **10 iterations** (APGD's default `steps=10`; AutoAttack passes none); "
    "APGD-T 10 iterations for each of the 9 target classes (`n_classes - 1`, DLR-targeted "
    "loss); FAB-T (`multi_targeted=True`) 10 iterations for each of the 9 targets; Square "
    "5,000 queries, `p_init` 0.8, margin loss, with its schedule of square sizes rescaled "
    "to 5,000 queries (`resc_schedule=True`). The reference implementation "
    "(fra31/auto-attack) runs APGD-CE, APGD-T and FAB-T for 100 iterations each and "
    "Square with `resc_schedule=False`, so "
    "torchattacks' standard version does about a tenth of their gradient steps: it is "
    "cheaper and can be weaker than the AutoAttack of the paper, and the speed target is "
    "measured against this cheaper one. Each of its attacks re-seeds torch's global RNG "
    "with the given seed (`torch.random.manual_seed`) at every call."
)


def screening_text(cells: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """What the audit's screened rungs did, read from its own rows."""
    screened = [r for _, c in cells if "audit" in c["methods"]
                for r in c["methods"]["audit"]["rungs"] if r.get("screened")]
    if not screened:
        return []
    size = screened[0]["screened"]["sample"]
    return [f"**Screening.** The audit's `standard` budget runs Square and its more-steps "
            f"check first on a seeded random sample of {size} of the points still robust, "
            "and on the rest only if the sample loses a point: a rung that would break 3% "
            f"of them slips through with probability {0.97 ** size:.0%}. Below, "
            f"{sum(r['screened']['escalated'] for r in screened)} of {len(screened)} "
            "screened runs escalated to all points.", ""]


def render(report: dict[str, Any], cells: list[tuple[str, dict[str, Any]]]) -> str:
    info = report["machine"]
    s = report["settings"]
    met = [c for _, c in cells if c.get("targets")]
    lines = [
        "# Attack-ladder audit vs torchattacks' AutoAttack and PGD-40",
        "",
        f"Command: `{report['command']}`",
        "",
        harness.machine_line(info, {"torchattacks": "torchattacks", "aerobust": "aerobust"},
                     "all three"),
        "",
        f"Data: `{report['data']['name']}` ({report['data']['checksum']}), the official MNIST "
        f"test set split {harness.MNIST_TRAIN:,} train / {10000 - harness.MNIST_TRAIN:,} "
        "test; the first "
        f"{s['n']} test images. Models (run store `{s['store']}`): "
        + "; ".join(f"{k} `{v}`" for k, v in report["runs"].items()) + ".",
        "",
        "Side by side in one process, per model and eps: `aerobust.audit(model, x, y, eps, "
        "budget=\"standard\", seed=0)`; torchattacks `AutoAttack(model, norm=\"Linf\", "
        "eps=eps, version=\"standard\", n_classes=10, seed=0)` on its own eval-mode copy "
        "with frozen parameters, timed with a clean forward and a forward on its output per "
        "batch (what a user needs for a per-point robust mask); our PGD-40 (CE, random "
        "start, step 2.5*eps/40) through `evaluate`. All three see the same batches of "
        f"{s['batch_size']} images; the order of the three rotates from cell to cell "
        f"(reversed every other round; {s['rounds']} round(s), times are medians). Robust = "
        "correct on the clean image and on the adversarial one, for all three. Targets: "
        "audit robust accuracy <= min(AutoAttack, PGD-40) + 0.5 points, and AutoAttack "
        f"seconds / audit seconds >= {SPEED_TARGET:g}. AA-only / audit-only: clean-correct "
        "points AutoAttack broke and the audit did not, and the other way round.",
        "",
        AUTOATTACK_TEXT,
        "",
        *screening_text(cells),
        *table(cells),
        "",
    ]
    if met:
        ok = sum(c["targets"]["met"] for c in met)
        lines += [f"Targets met (both) in {ok} of {len(met)} cells.", ""]
    elif not report["settings"]["audit"]:
        lines += ["The audit was skipped (`--skip-audit`): no targets.", ""]
    lines += detail_lines(cells)
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="first N test images (1000)")
    parser.add_argument("--eps", default=",".join(f"{e:g}" for e in EPSILONS),
                        help="comma-separated Linf radii in [0,1] (0.3,0.1)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="images per batch, the same for all three (256)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="timed rounds per cell, interleaved; medians reported (1)")
    parser.add_argument("--skip-audit", action="store_true",
                        help="time AutoAttack and PGD-40 only (no targets; writes nothing "
                             "unless --out is given)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help=f"official MNIST test files (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--split", type=Path, default=DEFAULT_SPLIT,
                        help=f"the 8k/2k split npz, (re)written from --data-dir (default "
                             f"{DEFAULT_SPLIT}; its file name names the trained runs)")
    harness.add_machine_args(parser)
    parser.add_argument("--malloc", choices=("retain", "system"), default="retain",
                        help="retain: keep freed memory for reuse, as the aerobust command "
                             "does (applies to all three); system: glibc's defaults")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results folder (default {RESULTS} for the full run; a "
                             "partial run writes nothing unless --out is given)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.n < 1 or args.batch_size < 1 or args.rounds < 1:
        parser.error("--n, --batch-size and --rounds must be >= 1")
    try:
        args.epsilons = tuple(float(e) for e in args.eps.split(",") if e.strip())
    except ValueError:
        parser.error(f"--eps takes comma-separated numbers, got {args.eps!r}")
    if not args.epsilons or not all(0 < e <= 1 for e in args.epsilons):
        parser.error(f"--eps takes radii in (0, 1], got {args.eps!r}")
    lower = {m.lower(): m for m in MODELS}
    wanted = [m.strip().lower() for m in args.models.split(",") if m.strip()]
    if not wanted or any(m not in lower for m in wanted):
        parser.error(f"--models takes a subset of {','.join(MODELS)}, got {args.models!r}")
    args.model_names = tuple(m for m in MODELS if m.lower() in wanted)
    args.full = (not args.skip_audit and args.model_names == MODELS and args.n == 1000
                 and sorted(args.epsilons) == sorted(EPSILONS))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if harness.missing(("torchattacks",)):  # imports without torchvision: checked for 3.5.1
        print("benchmarks/audit.py needs torchattacks: pip install --no-deps torchattacks",
              file=sys.stderr)
        return 2
    methods = METHODS if not args.skip_audit else tuple(m for m in METHODS if m != "audit")
    if "audit" in methods:
        try:
            import aerobust.audit  # noqa: F401
        except ImportError as exc:
            print(f"benchmarks/audit.py: aerobust.audit is not importable ({exc}); run with "
                  "--skip-audit to time AutoAttack and PGD-40 alone", file=sys.stderr)
            return 2

    log = harness.logger(args.quiet)
    try:
        dataset = harness.mnist_split(args.data_dir.expanduser(), args.split.expanduser())
    except (UserError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if dataset is None:
        print(f"benchmarks/audit.py: skipped: no official MNIST test files in {args.data_dir} "
              f"and no split at {args.split} (pass --data-dir or --split)", file=sys.stderr)
        return 0

    malloc = retain_freed_memory() if args.malloc == "retain" else None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    write_dir = args.out if args.out is not None else (RESULTS if args.full else None)
    store = args.store or RunStore().root
    log(f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} CPUs; "
        f"{dataset.name} ({dataset.checksum})")
    try:
        models = harness.load_models(dataset, store, args.model_names, not args.quiet)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    x = dataset.x_test[:args.n].contiguous()
    y = dataset.y_test[:args.n].contiguous()
    report: dict[str, Any] = {
        "command": harness.command("audit.py", argv),
        "machine": harness.machine_info(threads, malloc),
        "data": {**dataset.info(), "split": str(args.split)},
        "settings": {"n": len(x), "epsilons": list(args.epsilons), "models": list(models),
                     "batch_size": args.batch_size, "rounds": args.rounds,
                     "audit": "audit" in methods, "store": str(store),
                     "pgd_steps": PGD_STEPS, "accuracy_slack": ACC_SLACK,
                     "speed_target": SPEED_TARGET},
        "runs": {name: run for name, (_, run) in models.items()},
        "cells": [],
    }
    cells: list[tuple[str, dict[str, Any]]] = []
    start = time.perf_counter()
    for name, (model, _) in models.items():
        for eps in args.epsilons:
            log(f"{name}, eps {eps:g}:")
            cell = timed_cell(model, x, y, eps, args.batch_size, methods, args.rounds,
                              len(cells), log)
            cell["targets"] = targets(cell)
            report["cells"].append({"model": name, **cell})
            cells.append((name, cell))
            if write_dir is not None:  # so an interrupted run keeps the cells it finished
                atomic.write_json(write_dir / "audit.partial.json", report)
    report["seconds"] = time.perf_counter() - start
    harness.finish(report)
    text = render(report, cells)
    print(text)
    if write_dir is not None:
        harness.write_results(write_dir, "audit", text, report, log)
        (write_dir / "audit.partial.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
