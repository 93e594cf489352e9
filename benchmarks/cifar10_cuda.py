"""The ``cifar10`` preset's throughput on a CUDA GPU, in one call and under 10 minutes.

Why: the ``cifar10`` preset (VGG16, the conv autoencoder, PGD on AE-C) is meant for a
GPU and has never been timed on one here; before anyone books hours of GPU time, one
short run should say how many images per second the project's own code reaches there,
and so how long the preset's training runs will take.

It needs no download: it writes a synthetic archive of the real size in the official
format (``cifar-10-python.tar.gz`` holding ``cifar-10-batches-py/data_batch_1..5`` and
``test_batch``, 10,000 random 32x32x3 images each, Python-2 pickles as the official
ones) and loads it through ``aerobust.data.cifar10.load_cifar10`` (md5 check off: no
synthetic archive can match it; the official 50,000/10,000 count check stays on). Both
are timed. Then, on the device, each phase sized from an untimed warm-up so its timed
part takes about ``--budget`` seconds (capped at the data's size):

1. VGG16 training with the cifar family's recipe (``default_spec``: SGD, crop+flip,
   batches of 128), through the project's trainer (``training.fit``): one warm-up epoch
   and ``--repeats`` timed epochs on the first n training images. The trainer evaluates
   the test set after every epoch; that evaluation is timed on its own (the same call,
   wrapped) and taken out, so the figure is training images/s, and the evaluation's
   rate is reported beside it.
2. conv-ae training, the same way with its recipe (Adam, batches of 128).
3. PGD-7 on AE-C (the trained conv-ae in front of the trained VGG16) through
   ``attacks.evaluate`` in the preset's batches of 256, with the cifar family's
   adversarial-training settings (eps 8/255, step 2/255) and ``keep="last"``: every
   step runs on every image. The models are trained on random labels, so they are at
   chance, and the default ``keep="first"`` would drop the ~90% they misclassify at
   the first step and time almost nothing; ``keep="last"`` times the full attack (what
   adversarial training pays; on a real model ``keep="first"`` costs at most this).
4. AE-C's clean forward (``metrics.predict``, batches of 512), the floor any attack
   or evaluation pays per image.

Medians of the timed repetitions, ``torch.cuda.synchronize()`` around every timing.
Writes ``cifar10_cuda.md`` and ``.json`` under ``--out`` (default
``benchmarks/results/cifar10-cuda/``; a ``--smoke`` run writes only with ``--out``).

    python benchmarks/cifar10_cuda.py                        # on a CUDA machine
    python benchmarks/cifar10_cuda.py --device cpu --smoke   # checks the script, ~30 s

Without a CUDA device, ``--device cuda`` (the default) says so in one line and exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import io
import shlex
import statistics
import struct
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import numpy as np
import torch
from torch import nn

from aerobust import atomic
from aerobust.attacks import PGD, evaluate
from aerobust.data import Dataset
from aerobust.data.cifar10 import BATCHES_DIR, TEST_BATCH, TRAIN_BATCHES, load_cifar10
from aerobust.data.sources import CIFAR10_ARCHIVE
from aerobust.experiments.config import PROFILES
from aerobust.metrics import predict
from aerobust.models import AEClassifier
from aerobust.provenance import library_versions
from aerobust.training import TrainSpec, default_spec, fit, trainer
from aerobust.training.defaults import ADVERSARIAL_DEFAULTS

RESULTS = Path(__file__).resolve().parent / "results" / "cifar10-cuda"
TARGET_SECONDS = 600
ATTACK_BATCH = int(PROFILES["cifar"]["batch_size"])  # the preset's attacked batch
PREDICT_BATCH = 512  # metrics.predict's default, as the preset's clean cells use it
FULL_TRAIN, FULL_TEST = 50_000, 10_000  # what the projected preset times assume
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How large each phase may get: the real sizes, or ``--smoke``'s tiny ones."""

    per_batch: int  # images per archive batch file (10,000, as the official)
    probe: int  # training images of the untimed sizing epoch
    eval_n: int  # test images the trainer evaluates after each epoch
    max_train: int
    max_attack: int
    max_infer: int
    pgd_steps: int


REAL = Sizes(per_batch=10_000, probe=2_560, eval_n=10_000, max_train=50_000,
             max_attack=10_000, max_infer=50_000, pgd_steps=7)
SMOKE = Sizes(per_batch=100, probe=8, eval_n=8, max_train=16, max_attack=4, max_infer=32,
              pgd_steps=2)


# --- the synthetic archive ------------------------------------------------------------

def _py2(obj: Any) -> bytes:
    """Pickle opcodes as Python 2's cPickle wrote the official batches: ``str`` strings
    (bytes here; not unicode) and arrays through ``numpy.core.multiarray._reconstruct``."""
    if isinstance(obj, str):
        return _py2(obj.encode("latin1"))
    if isinstance(obj, bytes):
        return (b"U" + bytes([len(obj)]) + obj if len(obj) < 256
                else b"T" + struct.pack("<i", len(obj)) + obj)
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)
    if isinstance(obj, list):
        return b"](" + b"".join(_py2(v) for v in obj) + b"e"
    if isinstance(obj, dict):
        return b"}(" + b"".join(_py2(k) + _py2(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, np.ndarray) and obj.dtype == np.uint8 and obj.ndim == 2:
        out = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _py2(0) + b"\x85"
        out += _py2("b") + b"\x87R(" + _py2(1) + _py2(obj.shape[0]) + _py2(obj.shape[1])
        out += b"\x86cnumpy\ndtype\n" + _py2("u1") + _py2(0) + _py2(1) + b"\x87R"
        out += b"(" + _py2(3) + _py2("|") + b"NNN" + _py2(-1) + _py2(-1) + _py2(0) + b"tb"
        return out + b"\x89" + _py2(obj.tobytes()) + b"tb"
    raise TypeError(f"no Python-2 pickle for {type(obj).__name__}")


def _pickle(obj: dict[str, Any]) -> bytes:
    return b"\x80\x02" + _py2(obj) + b"."


def _batch(label: str, n: int, rng: np.random.Generator) -> bytes:
    """One batch file: n random images (N,3072) uint8 and labels 0..9, as the official."""
    labels = [int(v) for v in rng.integers(0, 10, n)]
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    names = [f"synthetic_{i:05d}.png" for i in range(n)]
    return _pickle({"batch_label": label, "labels": labels, "data": data, "filenames": names})


def write_archive(path: Path, per_batch: int, seed: int = 0) -> None:
    """``cifar-10-python.tar.gz`` as the official one is laid out, with random images."""
    rng = np.random.default_rng(seed)
    meta = _pickle({"num_cases_per_batch": per_batch, "label_names": [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
        "truck"], "num_vis": 3072})
    members = [("batches.meta", meta)]
    members += [(name, _batch(f"training batch {i} of 5", per_batch, rng))
                for i, name in enumerate(TRAIN_BATCHES, 1)]
    members.append((TEST_BATCH, _batch("testing batch 1 of 1", per_batch, rng)))
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo(BATCHES_DIR)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, blob in members:
            info = tarfile.TarInfo(f"{BATCHES_DIR}/{name}")
            info.size, info.mode = len(blob), 0o644
            tar.addfile(info, io.BytesIO(blob))


# --- timing ---------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, fn: Callable[[], T]) -> tuple[float, T]:
    """Seconds of ``fn()``, with the device's queue drained before and after, and its value."""
    _sync(device)
    start = time.perf_counter()
    value = fn()
    _sync(device)
    return time.perf_counter() - start, value


def _size(rate: float, seconds: float, unit: int, cap: int) -> int:
    """Images for ``seconds`` at ``rate``, in whole units, at least one unit, at most cap."""
    return min(cap, max(unit, int(rate * seconds) // unit * unit))


@contextlib.contextmanager
def _timed_evaluations(device: torch.device, seconds: list[float]) -> Iterator[None]:
    """The trainer's after-epoch test evaluation, the same call, timed into ``seconds``."""
    real = trainer.evaluate_model

    def timed(spec: TrainSpec, model: nn.Module, dataset: Dataset) -> dict[str, float]:
        took, scores = _timed(device, lambda: real(spec, model, dataset))
        seconds.append(took)
        return scores

    with mock.patch.object(trainer, "evaluate_model", timed):
        yield


def _peak_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


# --- phases ---------------------------------------------------------------------------

def _subset(data: Dataset, n_train: int, n_test: int) -> Dataset:
    return dataclasses.replace(
        data, x_train=data.x_train[:n_train], y_train=data.y_train[:n_train],
        x_test=data.x_test[:n_test], y_test=data.y_test[:n_test],
        checksum=f"{data.checksum}:first-{n_train}-{n_test}")


def _fit(arch: str, data: Dataset, epochs: int,
         device: torch.device) -> tuple[nn.Module, list[float], list[float]]:
    """The trainer on ``data``: the model, each epoch's training seconds and each
    after-epoch evaluation's seconds."""
    evals: list[float] = []
    with _timed_evaluations(device, evals):
        model, history = fit(default_spec(arch, data, epochs=epochs), data, device,
                             progress=False)
    return model, [row["seconds"] - e for row, e in zip(history, evals, strict=True)], evals


def train_phase(arch: str, data: Dataset, device: torch.device, sizes: Sizes, budget: float,
                repeats: int) -> tuple[nn.Module, dict[str, Any]]:
    """Training images/s of ``arch`` with its cifar recipe, through ``training.fit``."""
    _reset_peak(device)
    recipe = default_spec(arch, data)
    probe = _subset(data, min(sizes.probe, sizes.max_train), sizes.eval_n)
    _, probe_train, probe_eval = _fit(arch, probe, 1, device)
    probe_rate = len(probe.y_train) / probe_train[0]
    per_epoch = budget / (repeats + 1) - probe_eval[0]  # the warm-up epoch counts too
    n = _size(probe_rate, per_epoch, recipe.batch_size, sizes.max_train)
    model, train_s, eval_s = _fit(arch, _subset(data, n, sizes.eval_n), repeats + 1, device)
    rate = n / statistics.median(train_s[1:])
    eval_rate = sizes.eval_n / statistics.median(eval_s[1:])
    return model, {
        "arch": arch,
        "recipe": {k: getattr(recipe, k) for k in ("optimizer", "lr", "momentum",
                                                   "weight_decay", "schedule", "batch_size",
                                                   "augment", "loss")},
        "preset_epochs": recipe.epochs,
        "probe_images": len(probe.y_train), "probe_images_per_second": probe_rate,
        "images": n, "eval_images": sizes.eval_n, "timed_epochs": repeats,
        "train_seconds": train_s, "eval_seconds": eval_s,
        "images_per_second": rate, "eval_images_per_second": eval_rate,
        "projected_preset_minutes": recipe.epochs * (FULL_TRAIN / rate
                                                     + FULL_TEST / eval_rate) / 60,
        "peak_memory_mib": _peak_mib(device),
    }


def attack_phase(model: nn.Module, data: Dataset, device: torch.device, sizes: Sizes,
                 budget: float, repeats: int) -> dict[str, Any]:
    """PGD images/s on AE-C through ``attacks.evaluate``, as the preset runs attacks."""
    _reset_peak(device)
    settings = ADVERSARIAL_DEFAULTS["cifar"]
    attack = PGD(eps=settings["eps"], steps=sizes.pgd_steps, step_size=settings["step_size"],
                 keep="last")
    x, y = data.x_test, data.y_test
    warm = min(ATTACK_BATCH, sizes.max_attack)
    warm_s, _ = _timed(device, lambda: evaluate(model, x[:warm], y[:warm], attack,
                                                batch_size=ATTACK_BATCH))
    n = _size(warm / warm_s, budget / repeats, warm, sizes.max_attack)
    timed = [_timed(device, lambda: evaluate(model, x[:n], y[:n], attack,
                                             batch_size=ATTACK_BATCH))
             for _ in range(repeats)]
    seconds = [s for s, _ in timed]
    last = timed[-1][1]
    return {
        "attack": attack.params(), "execution": last.execution, "batch_size": ATTACK_BATCH,
        "images": n, "warmup_images": warm, "seconds": seconds,
        "images_per_second": n / statistics.median(seconds),
        "forwards": last.forwards, "backwards": last.backwards,
        "peak_memory_mib": _peak_mib(device),
    }


def inference_phase(model: nn.Module, data: Dataset, device: torch.device, sizes: Sizes,
                    budget: float, repeats: int) -> dict[str, Any]:
    """AE-C's clean forward (``metrics.predict``) over the first n training images."""
    _reset_peak(device)
    x = data.x_train
    warm = min(PREDICT_BATCH, sizes.max_infer)
    warm_s, _ = _timed(device, lambda: predict(model, x[:warm], batch_size=PREDICT_BATCH))
    n = _size(warm / warm_s, budget / repeats, warm, sizes.max_infer)
    seconds = [_timed(device, lambda: predict(model, x[:n], batch_size=PREDICT_BATCH))[0]
               for _ in range(repeats)]
    return {"batch_size": PREDICT_BATCH, "images": n, "seconds": seconds,
            "images_per_second": n / statistics.median(seconds),
            "peak_memory_mib": _peak_mib(device)}


# --- the run --------------------------------------------------------------------------

def _device_arg(name: str) -> str:
    try:
        torch.device(name)
    except RuntimeError as exc:
        raise argparse.ArgumentTypeError(f"not a device: {name!r} (cuda, cuda:N or cpu)") from exc
    return name


def cuda_problem(name: str) -> str | None:
    """Why ``name`` cannot run here, in one line; None when it can."""
    device = torch.device(name)
    if device.type != "cuda":
        return None
    if not torch.cuda.is_available():
        return (f"cifar10_cuda: no CUDA device is present (torch {torch.__version__}: "
                f"torch.version.cuda={torch.version.cuda}, torch.cuda.is_available()=False); "
                "run it on a machine with a CUDA GPU and a CUDA build of torch, or check the "
                "script with --device cpu --smoke")
    if device.index is not None and device.index >= torch.cuda.device_count():
        return (f"cifar10_cuda: no device {name}: torch sees {torch.cuda.device_count()} "
                "CUDA device(s)")
    return None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def markdown(r: dict[str, Any]) -> str:
    """The results page: every figure of ``r`` worth reading, in one table."""
    d, p = r["data"], r["phases"]
    vgg, ae, pgd, inf = p["train_vgg16"], p["train_conv_ae"], p["pgd_ae_c"], p["infer_ae_c"]
    eps = pgd["attack"]["eps"] * 255
    step = pgd["attack"]["step_size"] * 255

    def row(what: str, ph: dict[str, Any], seconds: list[float]) -> str:
        secs = ", ".join(f"{s:.2f}" for s in seconds)
        return f"| {what} | {ph['images_per_second']:,.0f} | {ph['images']:,} | {secs} |"

    def recipe(t: dict[str, Any]) -> str:
        c = t["recipe"]
        extra = (f", momentum {c['momentum']}, wd {c['weight_decay']}"
                 if c["optimizer"] == "sgd" else "")
        return (f"{c['optimizer']} lr {c['lr']}{extra}, batch {c['batch_size']}"
                f"{', crop+flip' if c['augment'] else ''}")

    lines = [
        f"# `cifar10` preset throughput on {r['device_name']}",
        "",
        f"{r['date']}; `{r['command']}`; torch {r['versions']['torch']} (CUDA "
        f"{r['cuda']}, cuDNN {r['cudnn']}, cudnn.benchmark {r['cudnn_benchmark']}, TF32 "
        f"convolutions {r['tf32']['cudnn']}, TF32 matmuls {r['tf32']['matmul']}), "
        f"aerobust {r['versions']['aerobust']}, python {r['versions']['python']}.",
    ]
    if r["smoke"]:
        lines += ["", "**Smoke run**: tiny sizes that check the script; not a measurement."]
    lines += [
        "",
        f"Synthetic archive in the official format ({d['train_images']:,} + "
        f"{d['test_images']:,} random images, {d['archive_bytes'] / 1e6:.0f} MB): written "
        f"in {d['archive_seconds']:.1f} s, loaded by `load_cifar10` (extract, unpickle, "
        f"checks, checksum) in {d['load_seconds']:.1f} s.",
        "",
        "| figure | images/s (median) | images per repetition | seconds per repetition |",
        "| --- | ---: | ---: | --- |",
        row(f"VGG16 training ({recipe(vgg)})", vgg, vgg["train_seconds"][1:]),
        row(f"conv-ae training ({recipe(ae)})", ae, ae["train_seconds"][1:]),
        row(f"PGD-{pgd['attack']['steps']} on AE-C (eps {eps:g}/255, step {step:g}/255, "
            f"keep=last, `evaluate` in batches of {pgd['batch_size']})", pgd, pgd["seconds"]),
        row(f"AE-C clean forward (`predict`, batches of {inf['batch_size']})", inf,
            inf["seconds"]),
        "",
        f"Training rates leave out the trainer's test evaluation after each epoch, timed "
        f"apart: {vgg['eval_images_per_second']:,.0f} images/s for VGG16, "
        f"{ae['eval_images_per_second']:,.0f} for conv-ae ({vgg['eval_images']:,} test "
        f"images). First epoch of each training run not timed (warm-up). PGD passes per "
        f"repetition: {pgd['forwards']} forwards, {pgd['backwards']} backwards.",
        "",
        f"Projected, at these rates, one training run of the preset on the full "
        f"{FULL_TRAIN:,}/{FULL_TEST:,} split: VGG16 {vgg['preset_epochs']} epochs "
        f"{vgg['projected_preset_minutes']:.1f} min, conv-ae {ae['preset_epochs']} epochs "
        f"{ae['projected_preset_minutes']:.1f} min.",
    ]
    if r["device"].startswith("cuda"):
        lines += ["", "Peak GPU memory (MiB): " + ", ".join(
            f"{name} {ph['peak_memory_mib']:,.0f}" for name, ph in p.items())]
    lines += ["", f"Total wall time: {r['total_seconds']:.0f} s "
              f"(target: under {TARGET_SECONDS} s)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", type=_device_arg, default="cuda",
                        help="cuda (default), cuda:N, or cpu (with --smoke, to check the script)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes (100 images per archive batch, a few steps): checks "
                             "the script in under a minute on a CPU; writes only with --out")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"write cifar10_cuda.md and .json here (default: {RESULTS}, "
                             "not for --smoke)")
    parser.add_argument("--work", type=Path, default=None,
                        help="where the temporary archive and its extraction go (~370 MB, "
                             "removed after loading; default: the system's temp folder)")
    parser.add_argument("--budget", type=float, default=90.0,
                        help="seconds for the timed part of each of the four phases (90)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed repetitions per phase (epochs, for training; 3)")
    args = parser.parse_args()
    if args.budget <= 0 or args.repeats < 1:
        parser.error("--budget must be > 0 and --repeats >= 1")
    problem = cuda_problem(args.device)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    device = torch.device(args.device)
    sizes = SMOKE if args.smoke else REAL
    out = args.out if args.out is not None or args.smoke else RESULTS
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f} s] {text}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(dir=args.work, prefix="cifar10-cuda-") as tmp:
        archive = Path(tmp) / CIFAR10_ARCHIVE
        archive_s, _ = _timed(device, lambda: write_archive(archive, sizes.per_batch))
        archive_bytes = archive.stat().st_size
        say(f"archive written ({archive_bytes / 1e6:.0f} MB)")
        load_s, data = _timed(device, lambda: load_cifar10(
            tmp, expected=(5 * sizes.per_batch, sizes.per_batch), verify_md5=False))
        say("archive loaded")
    phases: dict[str, dict[str, Any]] = {}
    vgg, phases["train_vgg16"] = train_phase("vgg16", data, device, sizes, args.budget,
                                             args.repeats)
    say("VGG16 trained")
    ae, phases["train_conv_ae"] = train_phase("conv-ae", data, device, sizes, args.budget,
                                              args.repeats)
    say("conv-ae trained")
    ae_c = AEClassifier(ae, vgg).eval()
    phases["pgd_ae_c"] = attack_phase(ae_c, data, device, sizes, args.budget, args.repeats)
    say("PGD timed")
    phases["infer_ae_c"] = inference_phase(ae_c, data, device, sizes, args.budget,
                                           args.repeats)
    total = time.perf_counter() - start
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "device": str(device), "device_name": _device_name(device),
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "tf32": {"cudnn": torch.backends.cudnn.allow_tf32,
                 "matmul": torch.backends.cuda.matmul.allow_tf32},
        "versions": library_versions(),
        "smoke": args.smoke, "budget_seconds": args.budget, "repeats": args.repeats,
        "sizes": dataclasses.asdict(sizes),
        "data": {"train_images": len(data.y_train), "test_images": len(data.y_test),
                 "archive_bytes": archive_bytes, "archive_seconds": archive_s,
                 "load_seconds": load_s, "checksum": data.checksum},
        "phases": phases, "total_seconds": total, "within_target": total < TARGET_SECONDS,
    }
    text = markdown(result)
    print(text, end="")
    if not result["within_target"]:
        say(f"over the {TARGET_SECONDS} s target: lower --budget")
    if out is not None:
        atomic.write_json(out / "cifar10_cuda.json", result)
        atomic.write_text(out / "cifar10_cuda.md", text)
        say(f"wrote {out / 'cifar10_cuda.md'} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
