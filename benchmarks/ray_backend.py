"""The quick preset on a local Ray cluster against ``--backend local --jobs 2``.

Runs ``aerobust reproduce --preset quick`` with each backend on this machine, one after
the other in alternating order over ``--rounds`` rounds (round 1: local then Ray, round
2: Ray then local, ...), each on a fresh run store and output folder, so that both see
the same machine over the same hour. ``--backend ray --address auto`` finds no cluster
and starts a local one (every CPU of the machine), which the timing includes, as a user
would pay it. Prints and writes each run's wall time, the Ray/local ratio per round and
their median, and whether both backends computed the same numbers (every row of every
experiment, timings left out).

Where ``ip netns`` works (root), both commands run in a fresh network namespace that has
only loopback, so the Ray processes cannot be reached from outside whatever they bind.

    python benchmarks/ray_backend.py --rounds 1 --out benchmarks/results/ray
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aerobust.reproduce import numbers

BACKENDS = {"local": ["--backend", "local", "--jobs", "2"], "ray": ["--backend", "ray"]}


class Namespace:
    """A loopback-only network namespace, or nothing where one cannot be made."""

    def __init__(self) -> None:
        self.name = f"aerobust-bench-{uuid.uuid4().hex[:8]}"
        made = shutil.which("ip") is not None and subprocess.run(
            ["ip", "netns", "add", self.name], capture_output=True).returncode == 0
        if made:
            subprocess.run(["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"],
                           check=True)
        self.made = made

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name] if self.made else []

    def close(self) -> None:
        if self.made:
            for pid in subprocess.run(["ip", "netns", "pids", self.name], capture_output=True,
                                      text=True).stdout.split():
                subprocess.run(["kill", "-9", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def _run(backend: str, work: Path, ns: Namespace) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "RAY_USAGE_STATS_ENABLED": "0"}
    args = [*ns.prefix(), sys.executable, "-m", "aerobust.cli", "reproduce", "--preset",
            "quick", "--out", str(work / "out"), "--store", str(work / "store"), "--quiet",
            *BACKENDS[backend]]
    start = time.perf_counter()
    proc = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{backend} failed:\n{proc.stderr}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write ray.json and ray.md")
    args = parser.parse_args()
    ns = Namespace()
    runs: list[dict[str, Any]] = []
    same = True
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                order = ("local", "ray") if r % 2 == 0 else ("ray", "local")
                rows = {}
                for backend in order:
                    work = Path(tmp) / f"{backend}-{r}"
                    seconds = _run(backend, work, ns)
                    rows[backend] = numbers(work / "out")
                    runs.append({"round": r + 1, "backend": backend, "seconds": seconds})
                    print(f"round {r + 1}: {backend} {seconds:.1f} s", flush=True)
                    shutil.rmtree(work / "store")
                same = same and rows["local"] == rows["ray"]
    finally:
        ns.close()
    ratios = []
    for r in range(1, args.rounds + 1):
        t = {run["backend"]: run["seconds"] for run in runs if run["round"] == r}
        ratios.append(t["ray"] / t["local"])
    result = {"runs": runs, "ray_over_local": ratios,
              "median_ray_over_local": statistics.median(ratios), "same_numbers": same,
              "loopback_namespace": ns.made, "cpus": os.cpu_count()}
    lines = [f"round {run['round']}: {run['backend']} {run['seconds']:.1f} s" for run in runs]
    lines.append(f"Ray / local --jobs 2: {', '.join(f'{x:.3f}' for x in ratios)} "
                 f"(median {result['median_ray_over_local']:.3f}); same numbers: "
                 f"{'yes' if same else 'NO'}")
    print(lines[-1])
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ray.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "ray.md").write_text(
            "# Quick preset: local Ray cluster vs `--backend local --jobs 2`\n\n"
            f"{os.cpu_count()} CPUs, one thread per task or worker, alternating order, "
            f"fresh run stores; loopback-only namespace: {ns.made}.\n\n"
            + "\n".join(f"- {line}" for line in lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
