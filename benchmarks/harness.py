"""What every benchmark here shares, so that each script keeps only its own measurement:
the machine and command it ran on, the results files, the real-MNIST 8k/2k split, the
models it attacks, and the timing helpers.

Named so that it shadows nothing: this folder is on ``sys.path`` when a script here
runs, and a module here called after a package (``attacks``, ``audit``) would hide it.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aerobust import atomic
from aerobust.attacks.runner import block_bounds
from aerobust.data import Dataset, load_dataset
from aerobust.errors import DataError
from aerobust.models import AEClassifier
from aerobust.provenance import library_versions
from aerobust.training import RunStore, adversarial_settings, default_spec

HERE = Path(__file__).resolve().parent
RESULTS_ROOT = HERE / "results"  # each benchmark writes to a folder in it
SHARED_MNIST = HERE.parents[1] / "shared" / "data" / "mnist"
MNIST_TRAIN = 8000  # the real-data split: the official test images, 8,000 train / 2,000 test


# ------------------------------------------------------------------- the record


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def command(script: str, argv: Sequence[str] | None) -> str:
    """The command line as typed (``argv`` None: this process's)."""
    return shlex.join(["python", f"benchmarks/{script}",
                       *(sys.argv[1:] if argv is None else argv)])


def missing(modules: Sequence[str]) -> list[str]:
    """The benchmark-only packages (peers) that are not installed."""
    out = []
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            out.append(module)
    return out


def machine_info(threads: int, malloc: dict[str, int] | None,
                 peers: Sequence[str] = ("torchattacks",)) -> dict[str, Any]:
    """The CPU, threads, malloc settings, library versions (the peers' too), platform,
    load average at start and date, for the record of a run."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": threads, "malloc": malloc,
        **library_versions(), **{p: __import__(p).__version__ for p in peers},
        "platform": platform.platform(), "load_average_at_start": list(os.getloadavg()),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def finish(report: dict[str, Any]) -> None:
    """The load average at the end, beside the one at the start."""
    report["machine"]["load_average_at_end"] = list(os.getloadavg())


def _malloc_text(malloc: dict[str, int] | None, applies_to: str) -> str:
    if not malloc:
        return "the system's defaults (--malloc system)"
    return (f"`retain_freed_memory()` for {applies_to} (glibc mmap threshold "
            f"{malloc['mmap_threshold'] // 2**20} MiB, trim threshold "
            f"{malloc['trim_threshold'] // 2**20} MiB, as the `aerobust` command sets)")


def machine_line(info: dict[str, Any], libraries: dict[str, str],
                 malloc_applies_to: str | None) -> str:
    """The page's machine line: ``libraries`` maps a key of ``info`` to its name on the
    page; the malloc settings are said when ``malloc_applies_to`` names who they hold for."""
    libs = "".join(f"{label} {info[key]}, " for key, label in libraries.items())
    malloc = ("" if malloc_applies_to is None
              else f"; malloc: {_malloc_text(info.get('malloc'), malloc_applies_to)}")
    loads = [", ".join(f"{v:.2f}" for v in info.get(key, []))
             for key in ("load_average_at_start", "load_average_at_end")]
    return (f"Machine: {info['cpu']}, {info['cpu_count']} CPUs, torch {info['torch']} "
            f"({info['torch_threads']} threads), {libs}Python {info['python']}{malloc}; "
            f"load average (1, 5, 15 min) at start {loads[0]}, at end {loads[1]}; "
            f"{info['date']}.")


def write_results(folder: Path, stem: str, text: str, report: dict[str, Any],
                  log: Callable[[str], None]) -> None:
    """``stem.md`` and ``stem.json`` in ``folder``, each atomically."""
    atomic.write_text(folder / f"{stem}.md", text)
    atomic.write_json(folder / f"{stem}.json", report)
    log(f"wrote {folder / f'{stem}.md'} and {folder / f'{stem}.json'}")


def logger(quiet: bool) -> Callable[[str], None]:
    """Progress lines on stderr, none with ``--quiet``."""
    def log(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)
    return log


def _threads(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def add_machine_args(parser: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--store``, as every benchmark here takes them."""
    parser.add_argument("--threads", type=_threads, default=None,
                        help=f"torch threads (default: torch's, here {torch.get_num_threads()})")
    parser.add_argument("--store", type=Path, default=None,
                        help="run store (default ~/.cache/aerobust/runs or $AEROBUST_STORE)")


# ------------------------------------------------------------- data and models


def mnist_split(data_dir: Path, split: Path | None = None) -> Dataset | None:
    """The real-data split, 8,000 train / 2,000 test of the official MNIST test images,
    as ``aerobust data mnist-test-split`` writes it: (re)written to ``split`` (a
    temporary file when None) from the official test files in ``data_dir`` when they
    are there (same files, same bytes, same checksum, so trained runs are reused), else
    the existing ``split`` file; None when neither is there."""
    from aerobust.data.mnist import write_test_split_npz

    have_files = any((folder / f"t10k-images-idx3-ubyte{suffix}").is_file()
                     for folder in (data_dir, data_dir / "mnist") for suffix in (".gz", ""))
    with tempfile.TemporaryDirectory() as tmp:
        path = split if split is not None else Path(tmp) / "mnist-8k2k.npz"
        if have_files:
            write_test_split_npz(data_dir, path, n_train=MNIST_TRAIN)
        elif not path.is_file():
            return None
        dataset = load_dataset(f"npz:{path}")
    if (len(dataset.y_train), len(dataset.y_test)) != (MNIST_TRAIN, 10000 - MNIST_TRAIN):
        raise DataError(f"{path}: holds {len(dataset.y_train)} train / "
                        f"{len(dataset.y_test)} test images, not the {MNIST_TRAIN} / "
                        f"{10000 - MNIST_TRAIN} MNIST split")
    return dataset


def load_models(dataset: Dataset, store: Path, wanted: Sequence[str],
                progress: bool) -> dict[str, tuple[nn.Module, str]]:
    """C (LeNet5), AE-C (conv-ae in front of the same LeNet5) and advC (LeNet5 trained
    with ``adversarial_settings(dataset)``), those ``wanted``, each with where its
    weights are: trained once through the run store with the specs the experiments use
    (the family's default epochs, seed 0), else reused."""
    runs = RunStore(store)

    def train(arch: str, **overrides: Any) -> Any:
        return runs.train(default_spec(arch, dataset, seed=0, **overrides), dataset, "cpu",
                          progress=progress)

    out: dict[str, tuple[nn.Module, str]] = {}
    if "C" in wanted or "AE-C" in wanted:
        clf_run = train("lenet5")
        if "C" in wanted:
            out["C"] = (clf_run.load("cpu").eval(), str(clf_run.path))
        if "AE-C" in wanted:
            ae_run = train("conv-ae")
            out["AE-C"] = (AEClassifier(ae_run.load("cpu"), clf_run.load("cpu")).eval(),
                           f"{ae_run.path} + {clf_run.path}")
    if "advC" in wanted:
        adv_run = train("lenet5", adversarial=adversarial_settings(dataset))
        out["advC"] = (adv_run.load("cpu").eval(), str(adv_run.path))
    return {name: out[name] for name in wanted}


def c_and_ae_c(dataset: Dataset, store: Path, progress: bool) -> dict[str, tuple[nn.Module, str]]:
    """C and AE-C as the attack benchmarks name them on their pages."""
    models = load_models(dataset, store, ("C", "AE-C"), progress)
    return {"C (LeNet5)": models["C"], "AE-C (conv-ae + LeNet5)": models["AE-C"]}


def frozen_copy(model: nn.Module) -> nn.Module:
    """An independent eval-mode copy with frozen parameters.

    A peer gets its own copy (torchattacks' ``Attack`` sets and restores modes itself),
    and frozen parameters spare its ``backward()`` calls (CW, DeepFool) the parameter
    gradients: the fastest set-up for them, so the comparison does not flatter ours.
    """
    twin = copy.deepcopy(model).eval()
    for param in twin.parameters():
        param.requires_grad_(False)
    return twin


# ------------------------------------------------------------------- timing


def interleaved(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall seconds of each call, run in turns (order reversed every other round)."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return times


def floor_pass(model: nn.Module, x: Tensor, y: Tensor, steps: int, block: int) -> None:
    """PGD's floor: ``steps`` forward+backward passes for the input gradient, nothing
    else, over the batch in the blocks our attack splits it into."""
    for begin, end in block_bounds(len(x), block):
        xb, yb = x[begin:end], y[begin:end]
        for _ in range(steps):
            xr = xb.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xr), yb, reduction="sum"), xr)
