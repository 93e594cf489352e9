"""The quick preset, two code versions side by side: does a change keep its time?

Runs ``aerobust reproduce --preset quick`` once with each of two source trees
(``--base``, e.g. a ``git worktree`` of the commit before a change, and ``--head``, this
checkout), at the same time, one thread each, each on a fresh run store, so both see the
same machine load. Prints and writes the two wall times, their ratio, and whether the two
runs' numbers agree (the accuracy, audited accuracy or gradient amplitude of every row
of every experiment, in order).

    git worktree add /tmp/base <commit>
    python benchmarks/quick_preset.py --base /tmp/base/src --out benchmarks/results/quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXPERIMENTS = ("table1", "table2", "figure2", "table3", "table4", "figure4", "audit")


def _start(src: Path, work: Path) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "aerobust.cli", "reproduce", "--preset", "quick", "--out",
            str(work / "out"), "--store", str(work / "store"), "--quiet"]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True), time.perf_counter()


def _accuracies(out: Path) -> list[float | None]:
    values = []
    for name in EXPERIMENTS:
        path = out / "digits" / f"{name}.json"
        if path.is_file():
            for row in json.loads(path.read_text())["rows"]:
                values.append(row.get("accuracy", row.get("audited_accuracy",
                                                          row.get("gradient_amplitude"))))
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the older tree's src/")
    parser.add_argument("--head", type=Path, default=HERE.parent / "src",
                        help="the newer tree's src/ (default: this checkout)")
    parser.add_argument("--out", type=Path, default=None, help="write quick.json and .md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: (src, Path(tmp) / name) for name, src in (("base", args.base),
                                                                 ("head", args.head))}
        started = {name: _start(src, work) for name, (src, work) in runs.items()}
        seconds = {}
        for name, (proc, start) in started.items():
            _, err = proc.communicate()
            if proc.returncode != 0:
                print(f"{name} failed:\n{err}", file=sys.stderr)
                return 1
            seconds[name] = time.perf_counter() - start
        same = _accuracies(runs["base"][1] / "out") == _accuracies(runs["head"][1] / "out")
    ratio = seconds["head"] / seconds["base"]
    result = {"base": str(args.base), "head": str(args.head), "seconds": seconds,
              "head_over_base": ratio, "same_numbers": same}
    text = (f"quick preset, side by side, one thread each: base {seconds['base']:.1f} s, "
            f"head {seconds['head']:.1f} s, head/base {ratio:.3f}; "
            f"same numbers: {'yes' if same else 'NO'}")
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "quick.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "quick.md").write_text(f"# Quick preset, side by side\n\n{text}.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
