"""Benchmark: the audit of the defenses that reject (MagNet, PuVAE) on the bundled digits.

Why: a detector that only non-adaptive attacks fail to evade must come out ``masking``,
and PuVAE's arg-min over labels needs its surrogate; this prints, per defense, the
clean accuracy, the paper's PGD-40 and the audited robust accuracy, the verdict, the
rung that closed the gap and what each rung broke. Every model is trained into the run
store first (reused when there), at the recipe ``benchmarks/defenses.py`` uses. Writes
nothing unless ``--json`` names a file.

    python benchmarks/audit_defenses.py                        # Linf 80/255, n=100, quick
    python benchmarks/audit_defenses.py --kinds puvae --budget standard
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

# the benchmarks' shared helpers (this folder is on sys.path when a script here runs)
from harness import add_machine_args

from aerobust import load_dataset
from aerobust.audit import BUDGETS, audit
from aerobust.errors import UserError
from aerobust.training import RunStore
from aerobust.training.defenses import defense_spec, train_defense

KINDS = ("magnet", "puvae")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--n", type=int, default=100, help="first N test images")
    parser.add_argument("--eps", type=float, default=80, help="Linf radius in 1/255")
    parser.add_argument("--budget", default="quick", choices=list(BUDGETS))
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"comma-separated subset of {','.join(KINDS)}")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    add_machine_args(parser)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        data = load_dataset(args.dataset)
        store = RunStore(args.store)
        runs = [(kind, train_defense(defense_spec(kind, data), data, store, progress=False))
                for kind in args.kinds.split(",")]
    except UserError as exc:
        print(f"audit_defenses: error: {exc}", file=sys.stderr)
        return 2
    x, y = data.x_test[: args.n], data.y_test[: args.n]
    print(f"{data.name}, first {len(x)} test images, Linf {args.eps:g}/255, budget "
          f"{args.budget}, seed 0")
    rows = []
    for kind, run in runs:
        start = time.perf_counter()
        found = audit(run.load(), x, y, args.eps / 255, budget=args.budget)
        row = {"kind": kind, "run": run.path.name, "clean": found.clean_accuracy,
               "pgd": found.baseline_robust_accuracy, "audited": found.robust_accuracy,
               "verdict": found.verdict, "closed_by": found.closed_by,
               "broken": {r["name"]: r["broken"] for r in found.rungs},
               "reasons": found.reasons, "notes": found.notes,
               "seconds": round(time.perf_counter() - start, 1)}
        rows.append(row)
        print(f"{kind}: clean {row['clean']:.2f}, PGD-40 {row['pgd']:.2f}, audited "
              f"{row['audited']:.2f}, {row['verdict']} (closed by {row['closed_by']}), "
              f"{row['seconds']:.0f} s  [{row['run']}]")
        print("  broken per rung: " + ", ".join(f"{k} {v}" for k, v in row["broken"].items()))
        for reason in row["reasons"] + row["notes"]:
            print(f"  - {reason}")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
