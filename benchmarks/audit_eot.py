"""Benchmark: the audit on randomised defenses beside a plain EOT-PGD.

Why: on a random defense the audit's robust accuracy must be an upper bound at most 3
points above what an adaptive attacker's first try finds (issue 28, item 3). The
defenses are the test zoo's (``tests/audit/random_zoo.py``): random resizing and
padding (Xie et al. 2018), additive noise, test-time dropout and a random choice among
four preprocessings, each in front of an MLP trained through it on the first 1,400
bundled digits. On the next ``--n`` digits, at Linf ``--eps``, in one process, one
after the other per defense:

1. ``aerobust.audit(model, x, y, eps, budget=...)``;
2. the plain EOT-PGD of the tests: 100 steps of eps/10, 2 restarts, cross-entropy
   averaged over 16 draws per gradient, final iterates.

Both are judged the one way the tool judges a random model (``attacks.judgment``: a
majority of 25 fresh forwards). The reference AutoAttack ``rand`` version is not run
here (``pip install --no-deps pyautoattack==0.2.0`` would bring it).

    python benchmarks/audit_eot.py --n 200                  # writes results/audit-eot/
    python benchmarks/audit_eot.py --n 50 --out /tmp/eot    # a smoke check elsewhere
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test zoo lives in tests/

from aerobust import atomic  # noqa: E402
from aerobust.audit import audit  # noqa: E402
from tests.audit.random_zoo import DEFENSES, defended, digits, eot_pgd  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "audit-eot"


def run(name: str, n: int, eps: float, budget: str) -> dict[str, Any]:
    x, y = digits()
    x, y = x[1400 : 1400 + n], y[1400 : 1400 + n]
    model = defended(name)
    torch.manual_seed(0)
    start = time.perf_counter()
    reference = eot_pgd(model, x, y, eps=eps).double().mean().item()
    eot_seconds = time.perf_counter() - start
    result = audit(model, x, y, eps, budget=budget)
    return {"defense": name, "n": n, "eps": eps, "budget": budget,
            "audit_robust_accuracy": result.robust_accuracy,
            "audit_baseline_robust_accuracy": result.baseline_robust_accuracy,
            "audit_clean_accuracy": result.clean_accuracy, "audit_seconds": result.seconds,
            "audit_verdict": result.verdict,
            "eot_pgd_robust_accuracy": reference, "eot_pgd_seconds": eot_seconds,
            "gap_points": 100 * (result.robust_accuracy - reference),
            "rungs": [{k: r[k] for k in ("name", "broken", "seconds")} for r in result.rungs]}


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = ["# The audit on randomised defenses beside a plain EOT-PGD", "",
             f"`{command}`; budget {rows[0]['budget']}, {rows[0]['n']} digits, Linf "
             f"{rows[0]['eps']:g}; MLP trained through each defense; robust accuracy judged "
             "by a majority of 25 fresh forwards, a break in a minimum over attacks "
             "confirmed by a second one. Target: audit <= EOT-PGD + 3 points.", "",
             "| defense | audit | EOT-PGD | audit - EOT-PGD (points) | PGD-40 (audit's "
             "baseline) | audit s | EOT-PGD s |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['defense']} | {r['audit_robust_accuracy']:.1%} | "
              f"{r['eot_pgd_robust_accuracy']:.1%} | {r['gap_points']:+.1f} | "
              f"{r['audit_baseline_robust_accuracy']:.1%} | {r['audit_seconds']:.1f} | "
              f"{r['eot_pgd_seconds']:.1f} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="test digits (at most 397)")
    parser.add_argument("--eps", type=float, default=0.1, help="Linf radius in [0,1]")
    parser.add_argument("--budget", default="standard", choices=("quick", "standard",
                                                                 "thorough"))
    parser.add_argument("--defenses", default=",".join(DEFENSES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.defenses.split(",")) - set(DEFENSES))
    if unknown or not 1 <= args.n <= 397:
        print(f"audit_eot.py: unknown defense(s) {unknown} or --n outside 1-397",
              file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.defenses.split(","):
        rows.append(run(name, args.n, args.eps, args.budget))
        r = rows[-1]
        print(f"{name}: audit {r['audit_robust_accuracy']:.3f} ({r['audit_seconds']:.1f} s), "
              f"EOT-PGD {r['eot_pgd_robust_accuracy']:.3f} ({r['eot_pgd_seconds']:.1f} s)",
              flush=True)
    command = "python benchmarks/audit_eot.py " + " ".join(sys.argv[1:] if argv is None
                                                           else argv)
    atomic.write_json(args.out / "results.json", {"command": command, "rows": rows})
    atomic.write_text(args.out / "results.md", markdown(rows, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
