"""Benchmark: the autoencoder defenses the paper cites under PGD-40, plain and adaptive.

Why: the defenses (``aerobust train defense``) are only worth auditing if they are
trained as their papers train them; this prints, for the paper's C and each defense at
its default recipe, the clean accuracy (and clean rejection rate of the detectors) and
robust accuracy under the paper's PGD-40 on CE at eps 20/255 and 80/255, plus, for the
defenses that reject, PGD-40 on Carlini & Wagner's adaptive loss (``detector-margin``).
Every model is trained into the run store first (reused when there). Writes nothing.

    python benchmarks/defenses.py                       # digits, first 100 test images
    python benchmarks/defenses.py --kinds magnet,puvae --n 50
"""

from __future__ import annotations

import argparse
import sys

import torch

# the benchmarks' shared helpers (this folder is on sys.path when a script here runs)
from harness import add_machine_args

from aerobust import attacks, load_dataset
from aerobust.attacks import PGD
from aerobust.errors import UserError
from aerobust.rejection import rejects
from aerobust.training import RunStore, default_spec
from aerobust.training.defenses import KINDS, defense_spec, train_defense

# (kind, settings): the defenses, both DAEs included
DEFENSES = [("dae", {"noise": 0.1}), ("dae", {"noise": 0.3}), ("magnet", {}),
            ("puvae", {}), ("hgd", {"guide": "features"}), ("hgd", {"guide": "logits"}),
            ("cascade", {})]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--n", type=int, default=100, help="first N test images")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"comma-separated subset of {','.join(KINDS)}")
    add_machine_args(parser)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    kinds = args.kinds.split(",")
    try:
        data = load_dataset(args.dataset)
        store = RunStore(args.store)
        x, y = data.x_test[: args.n], data.y_test[: args.n]
        models = [("C", store.train(default_spec("lenet5", data), data, progress=False))]
        models += [(f"{kind} {settings}", train_defense(
            defense_spec(kind, data, settings=settings), data, store, progress=False))
                   for kind, settings in DEFENSES if kind in kinds]
    except UserError as exc:
        print(f"defenses: error: {exc}", file=sys.stderr)
        return 2
    print(f"{data.name}, first {len(x)} test images; robust accuracy under PGD-40 (seed 0)")
    for name, run in models:
        model = run.load()
        cells = []
        for eps in (20, 80):
            for loss in ("ce", "detector-margin") if rejects(model) else ("ce",):
                ev = attacks.evaluate(model, x, y, PGD(eps=eps / 255, steps=40, loss=loss))
                cells.append(f"{loss}@{eps}: {ev.robust_accuracy:.3f}")
        fpr = "" if ev.false_positive_rate is None else \
            f", clean rejected {ev.false_positive_rate:.3f}"
        print(f"{name:45s} clean {ev.clean_accuracy:.3f}{fpr}; " + "; ".join(cells)
              + f"  [{run.path.name}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
