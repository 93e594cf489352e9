"""Benchmark: ``aerobust.audit`` beside the reference AutoAttack (Croce & Hein's own code).

Why: the audit claims to find at least what AutoAttack ``standard`` finds, at a third of
its time or less. Only the authors' implementation can decide that: torchattacks' port
runs 10-step APGD where the reference runs 100. Per model and threat model, on the same
first ``--n`` MNIST test images, in one process, one after the other (the audit and
AutoAttack take turns going first from cell to cell; PGD-40 runs last):

1. the reference ``AutoAttack(model, norm=norm, eps=eps, version="standard", seed=0)``,
   ``run_standard_evaluation(x, y, batch_size=...)`` on its own frozen eval-mode copy;
   robust = its returned label equals the true one (its own clean check included);
2. ``aerobust.audit(model, x, y, eps=eps, norm=norm, budget="standard", seed=0)``;
3. our PGD-40 in that norm (``aerobust.attacks.PGD(eps=eps, steps=40, norm=norm)``).

Cells: Linf 0.1 and 0.3, L2 1.5 and 2.0, L1 10 (eps in the [0,1] pixel scale; L2 2.0
and L1 10 are Maini et al. 2020's MNIST radii). Models: the paper's C and AE-C and the
adversarially trained advC and AE-advC, made by the experiments' recipes (``mnist``
preset: the full 60,000/10,000 MNIST from ``--data-dir``, seed 0) and taken from the run
store; a model the store lacks is trained first, which the script says before it starts
(advC takes hours on one CPU core); ``--no-train`` refuses instead (exit 2). Results are
rewritten after every cell (``autoattack_reference.md`` and ``.json`` under ``--out``),
so a long run keeps what it measured.

    python benchmarks/autoattack_reference.py --threads 1 --models C,AE-C --n 200 \\
        --out benchmarks/results/autoattack-reference
    python benchmarks/autoattack_reference.py --threads 1            # all four, n=1000

The reference is a benchmark-only dependency, installed without its requirements so
that it cannot pull another torch (it needs only torch and numpy)::

    pip install --no-deps pyautoattack==0.2.0

Without it the script says so and exits 2; without the MNIST files it exits 0.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# the sibling benchmark (this folder is on sys.path when a script here runs)
from harness import add_machine_args, frozen_copy, machine_info
from torch import Tensor, nn

from aerobust import atomic
from aerobust.attacks import PGD, evaluate
from aerobust.errors import UserError

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "autoattack-reference"
DEFAULT_DATA_DIR = HERE.parent.parent / "shared" / "data" / "mnist"
MODELS = ("C", "AE-C", "advC", "AE-advC")
CELLS = (("Linf", 0.1), ("Linf", 0.3), ("L2", 1.5), ("L2", 2.0), ("L1", 10.0))
METHODS = ("autoattack", "audit", "pgd40")
PGD_STEPS = 40
ACC_SLACK = 0.005  # the audit may leave 0.5 points more robust than min(AutoAttack, PGD-40)
SPEED_TARGET = 3.0  # AutoAttack seconds / audit seconds
SPEED_FLOOR = 0.2  # the per-cell speed target binds where AutoAttack leaves >= 20% robust
STEM = "autoattack_reference"
Log = Callable[[str], None]


# ------------------------------------------------------------------------- models


def load_models(names: tuple[str, ...], data_dir: Path, store: Path | None, train: bool,
                log: Log) -> tuple[dict[str, nn.Module], dict[str, list[str]], Any]:
    """The paper's variants as the ``mnist`` preset makes them (seed 0), through the
    run store; what the store lacks is named before anything trains, and with
    ``train=False`` refused. Returns the models, their run names and the workspace."""
    from aerobust.experiments.config import ExperimentConfig
    from aerobust.experiments.recipes import variant
    from aerobust.experiments.workspace import Workspace
    from aerobust.training import RunStore

    ws = Workspace(ExperimentConfig(dataset="mnist", data_dir=str(data_dir)),
                   store=RunStore(store) if store else None, device="cpu", progress=True)
    specs = {name: variant(ws.setup, name, seed=0) for name in names}
    missing: dict[str, str] = {}
    for spec in specs.values():
        for net in (spec.classifier, spec.autoencoder):
            if net is not None:
                run = ws.context.train_spec(net)[0]
                if ws.store.finished(run) is None:
                    missing[run.run_name] = f"{net.arch}, {net.epochs} epochs" + (
                        ", adversarial training: hours on one core" if "adversarial"
                        in net.options else "")
    if missing:
        what = "; ".join(f"{k} ({v})" for k, v in missing.items())
        if not train:
            raise UserError(f"the run store {ws.store.root} lacks {what}; train them (drop "
                            "--no-train) or pick --models that are there")
        log(f"training first (the run store {ws.store.root} lacks them): {what}")
    models = {name: ws.context.model(spec) for name, spec in specs.items()}
    runs = {name: list(ws.context.runs_of(spec).values()) for name, spec in specs.items()}
    return models, runs, ws


# ------------------------------------------------------------------ the three runs


def run_autoattack(model: nn.Module, x: Tensor, y: Tensor, norm: str, eps: float,
                   batch_size: int) -> dict[str, Any]:
    """The reference AutoAttack ``standard`` as its README calls it; each of its four
    attacks' seconds summed over batches (its ``perturb`` wrapped: two clock reads)."""
    from pyautoattack import AutoAttack

    aa = AutoAttack(model, norm=norm, eps=eps, version="standard", seed=0, device="cpu")
    subs: dict[str, float] = {}
    for name, sub in (("apgd-ce", aa.apgd), ("apgd-t", aa.apgd_targeted),
                      ("fab-t", aa.fab), ("square", aa.square)):
        def timed(*args: Any, _call: Any = sub.perturb, _name: str = name) -> Tensor:
            start = time.perf_counter()
            out = _call(*args)
            subs[_name] = subs.get(_name, 0.0) + time.perf_counter() - start
            return out

        sub.perturb = timed
    start = time.perf_counter()
    x_adv, y_adv = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    seconds = time.perf_counter() - start
    delta = (x_adv - x).flatten(1)
    size = {"Linf": delta.abs().amax(1), "L2": delta.norm(dim=1), "L1": delta.abs().sum(1)}
    return {"robust": (y_adv == y).cpu(), "seconds": seconds, "sub_attack_seconds": subs,
            "max_perturbation": float(size[norm].max()),
            "in_box": bool(x_adv.min() >= 0 and x_adv.max() <= 1)}


def run_audit(model: nn.Module, x: Tensor, y: Tensor, norm: str, eps: float,
              batch_size: int) -> dict[str, Any]:
    """``aerobust.audit`` as a user calls it, per-point robust from its ledger; its time
    split into the ladder's attack rungs and the fixed costs (the probes, the eps
    curve, the clean check: outside every rung; the convergence check: ``check``
    rungs), which do not shrink with n."""
    from aerobust.audit import audit

    start = time.perf_counter()
    a = audit(model, x, y, eps=eps, budget="standard", seed=0, batch_size=batch_size,
              norm=norm)
    seconds = time.perf_counter() - start
    robust = torch.tensor([p["clean_correct"] and p["broken_by"] is None for p in a.ledger])
    rungs = [{k: r[k] for k in ("name", "kind", "attacked", "broken", "seconds")}
             for r in a.rungs]
    ladder = sum(r["seconds"] for r in rungs if r["kind"] != "check")
    return {"robust": robust, "seconds": seconds, "verdict": a.verdict,
            "robust_accuracy_reported": a.robust_accuracy, "rungs": rungs,
            "ladder_seconds": ladder, "check_seconds": sum(
                r["seconds"] for r in rungs if r["kind"] == "check"),
            "outside_rungs_seconds": seconds - sum(r["seconds"] for r in rungs),
            "fixed_seconds": seconds - ladder}


def run_pgd(model: nn.Module, x: Tensor, y: Tensor, norm: str, eps: float,
            batch_size: int) -> dict[str, Any]:
    """Our PGD-40 in ``norm`` (CE, random start, step 2.5*eps/40) through ``evaluate``."""
    start = time.perf_counter()
    ev = evaluate(model, x, y, PGD(eps=eps, steps=PGD_STEPS, norm=norm, seed=0),
                  batch_size=batch_size)
    return {"robust_accuracy": ev.robust_accuracy, "seconds": time.perf_counter() - start}


def run_cell(model: nn.Module, x: Tensor, y: Tensor, norm: str, eps: float, batch_size: int,
             autoattack_first: bool, log: Log) -> dict[str, Any]:
    """One model at one radius: the three runs in turn, then the targets."""
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    calls = {"autoattack": lambda: run_autoattack(frozen_copy(model), x, y, norm, eps,
                                                  batch_size),
             "audit": lambda: run_audit(model, x, y, norm, eps, batch_size),
             "pgd40": lambda: run_pgd(model, x, y, norm, eps, batch_size)}
    order = ["autoattack", "audit"]
    order = [*(order if autoattack_first else order[::-1]), "pgd40"]
    methods: dict[str, dict[str, Any]] = {}
    for method in order:
        out = calls[method]()
        robust = out.pop("robust", None)
        if robust is not None:
            out["robust_accuracy"] = robust.double().mean().item()
            out["_robust"] = robust
        methods[method] = out
        log(f"    {method}: {out['seconds']:.1f} s, robust {_pct(out['robust_accuracy'])}")
    cell: dict[str, Any] = {"norm": norm, "eps": eps, "n": len(x), "order": order,
                            "clean_accuracy": clean.double().mean().item()}
    if "audit" in methods:
        aa, ours = methods["autoattack"].pop("_robust"), methods["audit"].pop("_robust")
        cell["broken_by_autoattack_only"] = int((clean & ~aa & ours).sum())
        cell["broken_by_audit_only"] = int((clean & aa & ~ours).sum())
        cell.update(targets(methods))
    else:
        methods["autoattack"].pop("_robust")
    cell["methods"] = methods
    return cell


def targets(m: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets for one cell: robust accuracy within 0.5 points of the
    stronger of AutoAttack and PGD-40, and the speed ratio (binding at >= 20% robust)."""
    reference = min(m["autoattack"]["robust_accuracy"], m["pgd40"]["robust_accuracy"])
    ratio = m["autoattack"]["seconds"] / m["audit"]["seconds"]
    return {"reference_robust_accuracy": reference,
            "accuracy_met": m["audit"]["robust_accuracy"] <= reference + ACC_SLACK + 1e-9,
            "speed_ratio": ratio,
            "speed_ratio_ladder": m["autoattack"]["seconds"] / m["audit"]["ladder_seconds"],
            "speed_binding": m["autoattack"]["robust_accuracy"] >= SPEED_FLOOR,
            "speed_met": ratio >= SPEED_TARGET}


def summary(cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The targets over all cells where the audit ran (None: none did)."""
    judged = [c for c in cells if "speed_ratio" in c]
    if not judged:
        return None
    median = statistics.median(c["speed_ratio"] for c in judged)
    binding = [c for c in judged if c["speed_binding"]]
    return {"cells": len(judged), "accuracy_met": all(c["accuracy_met"] for c in judged),
            "median_speed_ratio": median, "median_speed_met": median >= SPEED_TARGET,
            "binding_speed_cells": len(binding),
            "binding_speed_met": all(c["speed_met"] for c in binding)}


# ------------------------------------------------------------------------ report


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _yes(flag: bool | None) -> str:
    return "-" if flag is None else ("met" if flag else "**missed**")


def render(report: dict[str, Any]) -> str:
    mi, s = report["machine"], report["settings"]
    load = ", ".join(f"{v:.2f}" for v in mi["load_average_at_start"])
    end = ", ".join(f"{v:.2f}" for v in mi.get("load_average_at_end", [])) or "(running)"
    lines = [
        "# The audit beside the reference AutoAttack", "",
        f"Command: `{report['command']}`", "",
        f"Machine: {mi['cpu']}, {mi['cpu_count']} CPUs, torch {mi['torch']} "
        f"({mi['torch_threads']} threads), pyautoattack {mi['pyautoattack']}, aerobust "
        f"{mi['aerobust']}, Python {mi['python']}; load average (1, 5, 15 min) at start "
        f"{load}, at end {end}; {mi['date']}.", "",
        f"Data: `{report['data']['name']}` ({report['data']['checksum']}), the first "
        f"{s['n']} test images, batches of {s['batch_size']}. Models (seed 0, run store "
        f"`{s['store']}`): " + "; ".join(f"{k} `{' + '.join(v)}`"
                                          for k, v in report["runs"].items()) + ".", "",
        "Per cell, in one process: the reference `AutoAttack(..., version=\"standard\", "
        "seed=0).run_standard_evaluation`, `aerobust.audit(..., budget=\"standard\", "
        "seed=0)` (these two take turns going first) and our PGD-40 in the norm. Seconds "
        "are one wall-clock run each. Targets: audit robust <= min(AutoAttack, PGD-40) + "
        f"0.5 points; AA s / audit s >= {SPEED_TARGET:g} (median over cells, and in every "
        f"cell where AutoAttack leaves >= {SPEED_FLOOR:.0%} robust). Audit fixed s: the "
        "part of the audit's time that does not scale with the ladder (probes, eps curve, "
        "clean check, convergence check); AA s / ladder s leaves it out.", "",
        "| model | norm | eps | clean | AutoAttack | audit | PGD-40 | AA s | audit s "
        "(fixed) | PGD-40 s | AA s / audit s | AA s / ladder s | AA-only / audit-only "
        "| accuracy | speed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in report["cells"]:
        m = c["methods"]
        au = m.get("audit", {})
        speed = _yes(c["speed_met"]) if c.get("speed_binding") else (
            "n/a (<20% robust)" if "speed_met" in c else "-")
        lines.append(
            f"| {c['model']} | {c['norm']} | {c['eps']:g} | {_pct(c['clean_accuracy'])} "
            f"| {_pct(m['autoattack']['robust_accuracy'])} "
            f"| {_pct(au.get('robust_accuracy'))} | {_pct(m['pgd40']['robust_accuracy'])} "
            f"| {m['autoattack']['seconds']:.1f} "
            + (f"| {au['seconds']:.1f} ({au['fixed_seconds']:.1f}) " if au else "| - ")
            + f"| {m['pgd40']['seconds']:.1f} "
            + (f"| {c['speed_ratio']:.2f}x | {c['speed_ratio_ladder']:.2f}x "
               f"| {c['broken_by_autoattack_only']} / {c['broken_by_audit_only']} "
               if au else "| - | - | - ")
            + f"| {_yes(c.get('accuracy_met'))} | {speed} |")
    t = report.get("targets")
    lines.append("")
    if any("audit" not in c["methods"] for c in report["cells"]):
        lines.append("Audit `-`: the aerobust that ran has no `norm=` in its audit (issue 28, "
                     "item 1), so those cells ran AutoAttack and PGD-40 alone.")
    if t:
        lines.append(
            f"Targets over {t['cells']} cell(s): accuracy {_yes(t['accuracy_met'])}; median "
            f"speed ratio {t['median_speed_ratio']:.2f}x ({_yes(t['median_speed_met'])}); "
            f"every cell with AutoAttack >= {SPEED_FLOOR:.0%} robust "
            f"({t['binding_speed_cells']}): {_yes(t['binding_speed_met'])}.")
    if "seconds" in report:
        lines.append(f"Total {report['seconds']:.0f} s.")
    return "\n".join(lines).rstrip() + "\n"


def write(report: dict[str, Any], out: Path | None) -> None:
    if out is not None:
        atomic.write_json(out / f"{STEM}.json", report)
        atomic.write_text(out / f"{STEM}.md", render(report))


def bench(models: dict[str, nn.Module], x: Tensor, y: Tensor,
          cells: tuple[tuple[str, float], ...], batch_size: int, report: dict[str, Any],
          out: Path | None, log: Log) -> dict[str, Any]:
    """Every model at every cell, the files rewritten after each cell."""
    start = time.perf_counter()
    for name, model in models.items():
        for norm, eps in cells:
            log(f"{name}, {norm} {eps:g}:")
            cell = run_cell(model, x, y, norm, eps, batch_size,
                            len(report["cells"]) % 2 == 0, log)
            report["cells"].append({"model": name, **cell})
            report["targets"] = summary(report["cells"])
            write(report, out)
    report["seconds"] = time.perf_counter() - start
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    write(report, out)
    return report


# --------------------------------------------------------------------------- main


def parse_cells(text: str) -> tuple[tuple[str, float], ...]:
    """``Linf:0.1,L2:2`` -> ((Linf, 0.1), (L2, 2.0)); norms as in ``CELLS``."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        norm, _, eps = item.partition(":")
        if norm not in ("Linf", "L2", "L1"):
            raise argparse.ArgumentTypeError(f"{item!r}: the norm is Linf, L2 or L1")
        try:
            out.append((norm, float(eps)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: NORM:EPS, e.g. L2:1.5") from None
    if not out:
        raise argparse.ArgumentTypeError("no cells")
    return tuple(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="first N test images (1000)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--cells", type=parse_cells,
                        default=",".join(f"{n}:{e:g}" for n, e in CELLS),
                        help="comma-separated NORM:EPS, eps in [0,1] pixel units (default "
                             "%(default)s)")
    parser.add_argument("--batch-size", type=int, default=250,
                        help="images per attacked batch, the same for all three (250, "
                             "AutoAttack's default)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help=f"the MNIST files (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--no-train", action="store_true",
                        help="refuse (exit 2) when a model is not in the run store, rather "
                             "than train it")
    add_machine_args(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results folder (default {RESULTS} for the full run; any "
                             "other run writes only with --out)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.n < 1 or args.batch_size < 1:
        parser.error("--n and --batch-size must be >= 1")
    lower = {m.lower(): m for m in MODELS}
    wanted = {m.strip().lower() for m in args.models.split(",") if m.strip()}
    if not wanted or not wanted <= set(lower):
        parser.error(f"--models takes a subset of {','.join(MODELS)}, got {args.models!r}")
    args.model_names = tuple(m for m in MODELS if m.lower() in wanted)
    full = args.model_names == MODELS and args.n == 1000 and args.cells == CELLS
    args.write_dir = args.out if args.out is not None else (RESULTS if full else None)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import pyautoattack  # noqa: F401
    except ImportError:
        print("benchmarks/autoattack_reference.py needs the reference AutoAttack: "
              "pip install --no-deps pyautoattack==0.2.0", file=sys.stderr)
        return 2

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    if not any(args.data_dir.glob("t10k-images-idx3-ubyte*")):
        print(f"benchmarks/autoattack_reference.py: skipped: no MNIST files in "
              f"{args.data_dir} (pass --data-dir)", file=sys.stderr)
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        models, runs, ws = load_models(args.model_names, args.data_dir, args.store,
                                            not args.no_train, log)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dataset = ws.dataset
    x, y = dataset.x_test[:args.n].contiguous(), dataset.y_test[:args.n].contiguous()
    report: dict[str, Any] = {
        "command": shlex.join(["python", "benchmarks/autoattack_reference.py",
                               *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine_info(torch.get_num_threads(), None, peers=("pyautoattack",)),
        "data": dataset.info(),
        "settings": {"n": len(x), "batch_size": args.batch_size, "models": list(models),
                     "cells": [list(c) for c in args.cells], "store": str(ws.store.root),
                     "pgd_steps": PGD_STEPS,
                     "accuracy_slack": ACC_SLACK, "speed_target": SPEED_TARGET,
                     "speed_floor": SPEED_FLOOR},
        "runs": runs, "cells": [], "targets": None}
    report = bench(models, x, y, args.cells, args.batch_size, report, args.write_dir, log)
    print(render(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
