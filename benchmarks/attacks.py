"""Benchmark: aerobust's white-box attacks beside torchattacks' on the same models and inputs.

Why: our attacks must be at least as fast and as strong as a widely used reference
before the experiments lean on them. For FGSM, PGD-40, CW and DeepFool on the same
trained LeNet5 (C) and AE-C, and the same first ``--n`` test images in one batch, it
measures both libraries side by side in one process (calls interleaved, order
alternating each round, so machine noise hits both alike), and PGD against its floor:
``steps`` plain forward+backward passes (input gradient only) over the same batch.

Like for like: our attacks return a per-sample success mask; torchattacks returns only
x_adv, and learning which samples it fooled takes one more forward of the model. So
torchattacks is timed "to a success mask" (its call, then one no-grad forward on its
x_adv and the argmax comparison) and ours as called; the time of torchattacks' call
alone is kept beside it (``theirs_attack_seconds``), so nothing is hidden.

    python benchmarks/attacks.py                      # digits, writes benchmarks/results/
    python benchmarks/attacks.py --dataset digits,npz:/tmp/real/mnist-8k2k.npz
    python benchmarks/attacks.py --quick              # smoke check, writes nothing
    python benchmarks/attacks.py --attacks cw,deepfool  # a subset, writes nothing

torchattacks is a benchmark-only dependency: ``pip install --no-deps torchattacks``
(its torchvision requirement is not needed by the attacks used here).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib.metadata
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aerobust import atomic
from aerobust.allocator import retain_freed_memory
from aerobust.attacks import CPU_BLOCK_SIZE, CW, FGSM, PGD, DeepFool, Execution, evaluate
from aerobust.attacks.base import Attack
from aerobust.attacks.runner import block_bounds, channels_last_convs
from aerobust.data import Dataset, load_dataset
from aerobust.errors import UserError
from aerobust.models import AEClassifier
from aerobust.provenance import library_versions
from aerobust.training import RunStore, default_spec

RESULTS = Path(__file__).resolve().parent / "results"
EPSILONS = (20, 80)  # the paper's MNIST epsilons, in 0-255 units (FGSM and PGD)
PGD_STEPS = 40
CW_C, CW_STEPS, CW_LR = 1.0, 100, 0.01  # torchattacks' default c and lr; no binary search
DF_STEPS, DF_OVERSHOOT = 50, 0.02
KINDS = ("fgsm", "pgd", "cw", "deepfool")
ACC_SLACK = 0.005  # FGSM/PGD: our robust accuracy may exceed theirs by at most 0.5 points
PGD_FLOOR_MAX = 1.15
DEEPFOOL_MIN_RATIO = 10.0
SWEEP_BLOCKS = (8, 16, 32, 64, 128)  # and the whole batch


@dataclass
class Row:
    """One attack setting on one model: both libraries' figures and the target verdict."""

    attack: str
    kind: str  # fgsm | pgd | cw | deepfool: picks the target
    params: dict[str, Any]
    execution: dict[str, Any]  # what ours ran under (``Evaluation.execution``)
    ours_seconds: list[float]
    theirs_seconds: list[float]
    ours_robust: float
    theirs_robust: float
    ours_median_l2: float | None
    theirs_median_l2: float | None
    ours_forwards: int
    ours_backwards: int
    theirs_forwards: int
    theirs_backwards: int
    n: int
    floor_seconds: list[float] = field(default_factory=list)
    # torchattacks' call alone, read inside the same timed calls as ``theirs_seconds``
    # (which adds the forward that yields its success mask).
    theirs_attack_seconds: list[float] = field(default_factory=list)
    # torchattacks called on our blocks one after the other, each to a mask: what its
    # user gets by splitting the batch by hand as ours does (not for DeepFool, whose
    # torchattacks loop is per sample anyway).
    block: int = 0
    theirs_blocked_seconds: list[float] = field(default_factory=list)

    @property
    def ours_ips(self) -> float:
        return self.n / statistics.median(self.ours_seconds)

    @property
    def theirs_ips(self) -> float:
        return self.n / statistics.median(self.theirs_seconds)

    @property
    def theirs_attack_ips(self) -> float:
        return self.n / statistics.median(self.theirs_attack_seconds)

    @property
    def ratio(self) -> float:
        """Our speed over theirs to a success mask (>1: ours faster), from the medians."""
        return statistics.median(self.theirs_seconds) / statistics.median(self.ours_seconds)

    @property
    def ratio_attack_only(self) -> float:
        """Our speed over torchattacks' call alone (no success mask), from the medians."""
        return statistics.median(self.theirs_attack_seconds) / statistics.median(self.ours_seconds)

    @property
    def ratio_blocked(self) -> float | None:
        """Our speed over torchattacks run on our blocks, to a mask (None: not timed)."""
        if not self.theirs_blocked_seconds:
            return None
        return statistics.median(self.theirs_blocked_seconds) / statistics.median(self.ours_seconds)

    @property
    def floor_ratio(self) -> float | None:
        if not self.floor_seconds:
            return None
        return statistics.median(self.ours_seconds) / statistics.median(self.floor_seconds)

    def target(self) -> tuple[str, bool]:
        """The issue's target for this attack, and whether it was met."""
        acc_ok = self.ours_robust <= self.theirs_robust + 1e-9
        slack_ok = self.ours_robust <= self.theirs_robust + ACC_SLACK + 1e-9
        if self.kind == "deepfool":
            return (f"speed >= {DEEPFOOL_MIN_RATIO:g}x, acc <= theirs",
                    self.ratio >= DEEPFOOL_MIN_RATIO and acc_ok)
        if self.kind == "cw":
            return "speed >= 1x, acc <= theirs", self.ratio >= 1.0 and acc_ok
        met = self.ratio >= 1.0 and slack_ok
        text = "speed >= 1x, acc <= theirs+0.5"
        if self.kind == "pgd":
            floor = self.floor_ratio
            met = met and floor is not None and floor <= PGD_FLOOR_MAX
            text += f", <= {PGD_FLOOR_MAX:g}x floor"
        return text, met

    def misses(self) -> list[str]:
        """Which parts of the target were missed, with the figures (empty: met)."""
        out = []
        need = DEEPFOOL_MIN_RATIO if self.kind == "deepfool" else 1.0
        if self.ratio < need:
            out.append(f"speed {self.ratio:.3f}x < {need:g}x")
        slack = ACC_SLACK if self.kind in ("fgsm", "pgd") else 0.0
        if self.ours_robust > self.theirs_robust + slack + 1e-9:
            out.append(f"robust accuracy {_pct(self.ours_robust)} > theirs "
                       f"{_pct(self.theirs_robust)}" + (" + 0.5" if slack else ""))
        floor = self.floor_ratio
        if self.kind == "pgd" and (floor is None or floor > PGD_FLOOR_MAX):
            out.append(f"{floor:.2f}x the floor > {PGD_FLOOR_MAX:g}x" if floor is not None
                       else "floor not measured")
        return out

    def to_dict(self) -> dict[str, Any]:
        text, met = self.target()
        return {**asdict(self), "ours_images_per_second": self.ours_ips,
                "theirs_images_per_second": self.theirs_ips,
                "theirs_attack_only_images_per_second": self.theirs_attack_ips,
                "speed_ratio": self.ratio, "speed_ratio_attack_only": self.ratio_attack_only,
                "speed_ratio_vs_theirs_in_our_blocks": self.ratio_blocked,
                "pgd_over_floor": self.floor_ratio, "target": text, "met": met,
                "missed": self.misses()}


class PassCounter:
    """Counts forward passes (and backward passes through the output) of a module.

    Used once, outside the timed calls, to learn how many passes torchattacks ran
    (its CW stops early when the loss rises, which cannot be switched off).
    """

    def __init__(self, model: nn.Module) -> None:
        self.forwards = self.backwards = 0
        self._handle = model.register_forward_hook(self._hook)

    def _hook(self, _module: nn.Module, _inputs: Any, output: Tensor) -> None:
        self.forwards += 1
        if output.requires_grad:
            output.register_hook(self._count_backward)

    def _count_backward(self, grad: Tensor) -> None:
        self.backwards += 1

    def close(self) -> None:
        self._handle.remove()


def frozen_copy(model: nn.Module) -> nn.Module:
    """An independent eval-mode copy with frozen parameters.

    torchattacks gets its own copy (its ``Attack`` sets and restores modes itself), and
    frozen parameters spare its ``backward()`` calls (CW, DeepFool) the parameter
    gradients: the fastest set-up for them, so the comparison does not flatter ours.
    """
    twin = copy.deepcopy(model).eval()
    for param in twin.parameters():
        param.requires_grad_(False)
    return twin


def load_models(dataset: Dataset, store: Path, progress: bool) -> dict[str, tuple[nn.Module, str]]:
    """C (LeNet5) and AE-C (conv-ae in front of the same LeNet5), trained or reused."""
    runs = RunStore(store)
    clf_run = runs.train(default_spec("lenet5", dataset), dataset, "cpu", progress=progress)
    ae_run = runs.train(default_spec("conv-ae", dataset), dataset, "cpu", progress=progress)
    clf = clf_run.load("cpu").eval()
    aec = AEClassifier(ae_run.load("cpu"), clf_run.load("cpu")).eval()
    return {"C (LeNet5)": (clf, str(clf_run.path)),
            "AE-C (conv-ae + LeNet5)": (aec, f"{ae_run.path} + {clf_run.path}")}


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


def robust_of(model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor) -> tuple[float, float | None]:
    """Robust accuracy as ``aerobust.attacks.evaluate`` defines it (correct clean AND at
    x_adv), and the median L2 over the samples turned from correct to wrong."""
    with torch.no_grad():
        clean = model(x).argmax(dim=1) == y
        adv = model(x_adv).argmax(dim=1) == y
    flipped = clean & ~adv
    l2 = (x_adv - x).flatten(1).norm(dim=1)[flipped].double()
    return (clean & adv).double().mean().item(), (l2.median().item() if len(l2) else None)


def floor_pass(model: nn.Module, x: Tensor, y: Tensor, steps: int, block: int) -> None:
    """PGD's floor: ``steps`` forward+backward passes for the input gradient, nothing
    else, over the batch in the blocks our attack splits it into."""
    for begin, end in block_bounds(len(x), block):
        xb, yb = x[begin:end], y[begin:end]
        for _ in range(steps):
            xr = xb.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xr), yb, reduction="sum"), xr)


def deepfool_gradients(model: nn.Module, x: Tensor, rounds: int) -> dict[str, Any]:
    """DeepFool's per-iteration cost, three ways: one forward, then the K-1 input
    gradients of ``Z_k - Z_pred`` over the whole clean batch as K-1 backward passes
    (ours), as one ``is_grads_batched`` call, or as ``torch.func.vmap`` of a ``vjp``.

    Timed interleaved; each path's largest difference from the loop is recorded, so the
    choice in ``DeepFool`` can be re-checked on any machine.
    """
    from torch.func import vjp, vmap

    model = frozen_copy(model)
    with torch.no_grad():
        predicted = model(x).argmax(dim=1)
    k = int(model(x[:1]).shape[1])
    others = (predicted + torch.arange(1, k)[:, None]) % k  # (K-1, N), never the prediction
    cotangents = torch.zeros(k - 1, len(x), k)
    cotangents.scatter_(2, others.unsqueeze(2), 1.0)
    cotangents.scatter_(2, predicted.expand(k - 1, -1).unsqueeze(2), -1.0)

    def loop() -> Tensor:
        xr = x.detach().requires_grad_(True)
        logits = model(xr)
        return torch.stack([
            torch.autograd.grad(logits, xr, cotangents[i], retain_graph=i < k - 2)[0]
            for i in range(k - 1)
        ])

    def batched() -> Tensor:
        xr = x.detach().requires_grad_(True)
        return torch.autograd.grad(model(xr), xr, cotangents, is_grads_batched=True)[0]

    def func() -> Tensor:
        _, pullback = vjp(model, x)
        return vmap(pullback)(cotangents)[0]

    paths: dict[str, Callable[[], Tensor]] = {
        "per-class loop (ours)": loop, "is_grads_batched": batched, "torch.func vmap": func,
    }
    expected = loop()
    diffs = {name: (path() - expected).abs().max().item() for name, path in paths.items()}
    times = interleaved(paths, rounds)
    return {name: {"seconds": times[name], "max_abs_diff": diffs[name]} for name in paths}


def deepfool_gradient_lines(paths: dict[str, Any], n: int) -> list[str]:
    parts = [f"{name} {statistics.median(v['seconds']):.3f} s (max |diff| from the loop "
             f"{v['max_abs_diff']:.1g})" for name, v in paths.items()]
    return [f"- DeepFool, one iteration's gradients over all {n} clean images (one forward, "
            "then the K-1 vector-Jacobian products, the iteration's dominant cost): "
            + "; ".join(parts) + "."]


def block_sweep(model: nn.Module, x: Tensor, y: Tensor, rounds: int) -> dict[str, Any]:
    """Our cost at several block sizes (``Execution.block_size``), timed interleaved: the
    measurement behind ``CPU_BLOCK_SIZE``. One forward+backward pass stands for a PGD or
    CW step; FGSM and DeepFool run whole."""
    model = frozen_copy(model)
    sizes = [b for b in SWEEP_BLOCKS if b < len(x)] + [len(x)]
    eps = EPSILONS[0] / 255
    makers: dict[str, Callable[[int], Callable[[], object]]] = {
        "forward+backward pass": lambda b: lambda: floor_pass(model, x, y, 1, b),
        f"FGSM eps={EPSILONS[0]}/255": lambda b: partial(
            FGSM(eps=eps), model, x, y, execution=Execution(block_size=b)),
        f"DeepFool steps={DF_STEPS}": lambda b: partial(
            DeepFool(steps=DF_STEPS, overshoot=DF_OVERSHOOT), model, x, y,
            execution=Execution(block_size=b)),
    }
    out: dict[str, Any] = {}
    for what, make in makers.items():
        calls = {str(b): make(b) for b in sizes}
        times = interleaved(calls, rounds)
        out[what] = {size: {"seconds": statistics.median(t), "minor_faults": minor_faults(
            calls[size])} for size, t in times.items()}
    return out


def minor_faults(call: Callable[[], object]) -> int:
    """Minor page faults of one call: memory the allocator gave back to the system and
    the call had to map (and zero) again."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    call()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def block_sweep_lines(sweep: dict[str, Any], n: int) -> list[str]:
    sizes = list(next(iter(sweep.values())))
    lines = [
        "",
        f"Our time per call over the {n} images by block size (median seconds; in brackets "
        f"the speed-up over one block of {n}, then the minor page faults of one call; "
        f"`CPU_BLOCK_SIZE` = {CPU_BLOCK_SIZE}):",
        "",
        "| call | " + " | ".join(f"block {b}" for b in sizes) + " |",
        "| --- |" + " ---: |" * len(sizes),
    ]
    for what, cells in sweep.items():
        whole = cells[sizes[-1]]["seconds"]
        lines.append(f"| {what} | " + " | ".join(
            f"{c['seconds']:.3f} ({whole / c['seconds']:.2f}x), {c['minor_faults']:,} faults"
            for c in cells.values()) + " |")
    return lines


def layout_compare(model: nn.Module, x: Tensor, y: Tensor, rounds: int,
                   kinds: tuple[str, ...]) -> dict[str, Any]:
    """Our calls in the model's own layout (``Execution(channels_last=False)``) beside
    NHWC (the CPU default), timed interleaved: the measurement behind that default. The
    plain pass runs NHWC weights through ``channels_last_convs`` exactly as the attacks
    do."""
    model = frozen_copy(model)
    attacks: dict[str, Attack] = {}
    if "fgsm" in kinds:
        attacks[f"FGSM eps={EPSILONS[0]}/255"] = FGSM(eps=EPSILONS[0] / 255)
    if "deepfool" in kinds:
        attacks[f"DeepFool steps={DF_STEPS}"] = DeepFool(steps=DF_STEPS, overshoot=DF_OVERSHOOT)
    block = Execution().resolve(len(x), x.device).block_size  # the attacks' blocks

    def nhwc_pass() -> None:
        with channels_last_convs(model):
            floor_pass(model, x, y, 1, block)

    pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "forward+backward pass": (lambda: floor_pass(model, x, y, 1, block), nhwc_pass),
    }
    for what, attack in attacks.items():
        pairs[what] = tuple(partial(attack, model, x, y,
                                    execution=Execution(channels_last=flag))
                            for flag in (False, True))
    out: dict[str, Any] = {}
    for what, (nchw, nhwc) in pairs.items():
        times = interleaved({"nchw": nchw, "nhwc": nhwc}, rounds)
        out[what] = {k: statistics.median(v) for k, v in times.items()}
    return out


def layout_lines(layout: dict[str, Any], n: int) -> list[str]:
    parts = [f"{what} {t['nchw']:.3f} s vs {t['nhwc']:.3f} s (**{t['nchw'] / t['nhwc']:.2f}x**)"
             for what, t in layout.items()]
    return ["", f"Our calls over the {n} images in the model's own layout (NCHW, "
            "`channels_last=False`) vs NHWC weights (`channels_last=True`, the CPU default; "
            "medians, speed-up in bold): " + "; ".join(parts) + "."]


def bench_attack(
    name: str,
    kind: str,
    ours: Attack,
    theirs_cls: type,
    theirs_kwargs: dict[str, Any],
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    repeats: int,
    budget: float,
) -> Row:
    """Warm up both (the warm-up call also gives the accuracy), then time them interleaved."""
    their_model = frozen_copy(model)
    theirs = theirs_cls(their_model, **theirs_kwargs)
    floor_model = frozen_copy(model) if kind == "pgd" else None

    start = time.perf_counter()
    ev = evaluate(model, x, y, ours, batch_size=len(x))  # our own accuracy definition
    ours_warm = time.perf_counter() - start
    block = ev.execution["block_size"]  # the blocks ours ran in
    torch.manual_seed(0)
    counter = PassCounter(their_model)
    start = time.perf_counter()
    x_theirs = theirs(x, y)
    theirs_warm = time.perf_counter() - start
    counter.close()
    theirs_robust, theirs_l2 = robust_of(model, x, y, x_theirs)

    attack_only: list[float] = []

    def theirs_to_mask() -> Tensor:
        """torchattacks' call plus what a user needs to learn which samples it fooled."""
        start = time.perf_counter()
        adv = theirs(x, y)
        attack_only.append(time.perf_counter() - start)
        with torch.no_grad():
            return their_model(adv).argmax(dim=1) != y

    def theirs_in_blocks() -> Tensor:
        """torchattacks on our blocks, one call each, to a mask."""
        masks = []
        for begin, end in block_bounds(len(x), block):
            xb, yb = x[begin:end], y[begin:end]
            adv = theirs(xb, yb)
            with torch.no_grad():
                masks.append(their_model(adv).argmax(dim=1) != yb)
        return torch.cat(masks)

    calls: dict[str, Callable[[], object]] = {
        "ours": lambda: ours(model, x, y),  # returns the success mask itself
        "theirs": theirs_to_mask,
    }
    one_round = ours_warm + theirs_warm
    if kind != "deepfool" and block < len(x):
        calls["theirs_blocked"] = theirs_in_blocks
        one_round += theirs_warm
    if floor_model is not None:
        floor_pass(floor_model, x, y, PGD_STEPS, block)
        start = time.perf_counter()
        floor_pass(floor_model, x, y, PGD_STEPS, block)
        one_round += time.perf_counter() - start
        calls["floor"] = lambda: floor_pass(floor_model, x, y, PGD_STEPS, block)
    rounds = max(3, min(repeats, int(budget / max(one_round, 1e-9))))
    times = interleaved(calls, rounds)
    return Row(
        attack=name, kind=kind, params=ours.params(), execution=ev.execution, n=len(x),
        ours_seconds=times["ours"], theirs_seconds=times["theirs"],
        theirs_attack_seconds=attack_only, floor_seconds=times.get("floor", []),
        block=block, theirs_blocked_seconds=times.get("theirs_blocked", []),
        ours_robust=ev.robust_accuracy, theirs_robust=theirs_robust,
        ours_median_l2=ev.median_l2, theirs_median_l2=theirs_l2,
        ours_forwards=ev.forwards, ours_backwards=ev.backwards,
        theirs_forwards=counter.forwards, theirs_backwards=counter.backwards,
    )


def bench_model(model: nn.Module, x: Tensor, y: Tensor, repeats: int, budget: float,
                log: Callable[[str], None], kinds: tuple[str, ...] = KINDS) -> list[Row]:
    """Every attack setting on one model, with matched settings on both sides."""
    import torchattacks.attacks.cw as ta_cw
    import torchattacks.attacks.deepfool as ta_deepfool
    import torchattacks.attacks.fgsm as ta_fgsm
    import torchattacks.attacks.pgd as ta_pgd

    cases: list[tuple[str, str, Attack, type, dict[str, Any]]] = []
    for e in EPSILONS:
        eps = e / 255
        cases.append((f"FGSM eps={e}/255", "fgsm", FGSM(eps=eps), ta_fgsm.FGSM, {"eps": eps}))
    for e in EPSILONS:
        eps = e / 255
        alpha = 2.5 * eps / PGD_STEPS  # our default step size, given to both
        cases.append((
            f"PGD-{PGD_STEPS} eps={e}/255", "pgd",
            PGD(eps=eps, steps=PGD_STEPS, step_size=alpha, random_start=True),
            ta_pgd.PGD, {"eps": eps, "alpha": alpha, "steps": PGD_STEPS, "random_start": True},
        ))
    cases.append((
        f"CW c={CW_C:g} steps={CW_STEPS}", "cw",
        CW(confidence=0.0, c_init=CW_C, binary_steps=1, steps=CW_STEPS, lr=CW_LR,
           abort_early=False),
        ta_cw.CW, {"c": CW_C, "kappa": 0, "steps": CW_STEPS, "lr": CW_LR},
    ))
    cases.append((
        f"DeepFool steps={DF_STEPS}", "deepfool",
        DeepFool(steps=DF_STEPS, overshoot=DF_OVERSHOOT),
        ta_deepfool.DeepFool, {"steps": DF_STEPS, "overshoot": DF_OVERSHOOT},
    ))
    rows = []
    for name, kind, ours, theirs_cls, theirs_kwargs in cases:
        if kind not in kinds:
            continue
        row = bench_attack(name, kind, ours, theirs_cls, theirs_kwargs, model, x, y,
                           repeats, budget)
        log(f"  {name}: ours {row.ours_ips:,.0f} img/s, theirs {row.theirs_ips:,.0f} img/s "
            f"to a mask ({row.ratio:.2f}x; attack only {row.theirs_attack_ips:,.0f} img/s, "
            f"{row.ratio_attack_only:.2f}x), robust {100 * row.ours_robust:.1f}% vs "
            f"{100 * row.theirs_robust:.1f}% [{len(row.ours_seconds)} rounds]")
        rows.append(row)
    return rows


def clean_accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).double().mean().item()


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def markdown_table(rows: list[Row]) -> list[str]:
    """The per-model table of the issue, then PGD against its floor."""
    lines = [
        "| attack | ours img/s | torchattacks img/s, to mask | speed ratio "
        "| torchattacks img/s, attack only | ratio vs attack only "
        "| torchattacks in our blocks img/s | ratio vs that | ours robust acc "
        "| theirs robust acc | target | met? |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        text, met = row.target()
        blocked = row.ratio_blocked
        blocked_cells = ("- | -" if blocked is None else
                         f"{row.n / statistics.median(row.theirs_blocked_seconds):,.1f} "
                         f"| {blocked:.2f}x")
        lines.append(
            f"| {row.attack} | {row.ours_ips:,.1f} | {row.theirs_ips:,.1f} | {row.ratio:.2f}x "
            f"| {row.theirs_attack_ips:,.1f} | {row.ratio_attack_only:.2f}x | {blocked_cells} "
            f"| {_pct(row.ours_robust)} | {_pct(row.theirs_robust)} | {text} "
            f"| {'yes' if met else '**NO**'} |"
        )
    lines.append("")
    missed = [row for row in rows if row.misses()]
    lines.append(f"Targets met: {len(rows) - len(missed)} of {len(rows)}."
                 + (" Missed: " + "; ".join(f"{row.attack} ({', '.join(row.misses())})"
                                            for row in missed) + "." if missed else ""))
    lines.append("")
    for row in rows:
        floor = row.floor_ratio
        if floor is not None:
            lines.append(
                f"- {row.attack}: ours {statistics.median(row.ours_seconds):.3f} s = "
                f"**{floor:.2f}x** the floor ({PGD_STEPS} forward+backward passes in blocks "
                f"of {row.block}: {statistics.median(row.floor_seconds):.3f} s); ours ran "
                f"{row.ours_forwards} forwards / {row.ours_backwards} backwards "
                f"(stops once every sample is fooled), torchattacks "
                f"{row.theirs_forwards} / {row.theirs_backwards}."
            )
    for row in rows:
        if row.kind in ("cw", "deepfool"):
            ours_l2 = "-" if row.ours_median_l2 is None else f"{row.ours_median_l2:.3f}"
            theirs_l2 = "-" if row.theirs_median_l2 is None else f"{row.theirs_median_l2:.3f}"
            lines.append(
                f"- {row.attack}: median L2 of the samples flipped: ours {ours_l2}, "
                f"torchattacks {theirs_l2}; passes (forward/backward) ours "
                f"{row.ours_forwards}/{row.ours_backwards}, torchattacks "
                f"{row.theirs_forwards}/{row.theirs_backwards}."
            )
    return lines


def machine_info(threads: int, malloc: dict[str, int] | None,
                 peers: tuple[str, ...] = ("torchattacks",)) -> dict[str, Any]:
    """The machine line's facts, with the version of each installed peer in ``peers``
    (distribution names)."""
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
        **library_versions(), **{peer: importlib.metadata.version(peer) for peer in peers},
        "platform": platform.platform(), "load_average_at_start": list(os.getloadavg()),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _malloc_text(malloc: dict[str, int] | None) -> str:
    if not malloc:
        return "the system's defaults (--malloc system)"
    return (f"`retain_freed_memory()` for both libraries (glibc mmap threshold "
            f"{malloc['mmap_threshold'] // 2**20} MiB, trim threshold "
            f"{malloc['trim_threshold'] // 2**20} MiB, as the `aerobust` command sets)")


def render(report: dict[str, Any], sections: list[tuple[str, dict[str, Any], list[str]]]) -> str:
    info = report["machine"]
    lines = [
        "# White-box attacks: aerobust vs torchattacks",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {info['cpu']}, {info['cpu_count']} CPUs, torch {info['torch']} "
        f"({info['torch_threads']} threads), torchattacks {info['torchattacks']}, "
        f"Python {info['python']}; malloc: {_malloc_text(info.get('malloc'))}; "
        f"load average (1, 5, 15 min) at start "
        f"{', '.join(f'{v:.2f}' for v in info['load_average_at_start'])}, at end "
        f"{', '.join(f'{v:.2f}' for v in info.get('load_average_at_end', []))}; "
        f"{info['date']}.",
        "",
        "Both libraries attack the same model weights (torchattacks gets its own eval-mode "
        "copy with frozen parameters) and the same first n test images, one batch per call. "
        "Ours splits that batch into blocks (`Execution.block_size`; on a CPU "
        f"`CPU_BLOCK_SIZE` = {CPU_BLOCK_SIZE} samples); \"torchattacks in our blocks\" "
        "calls torchattacks block by block the same way, so the part of our lead that "
        "comes from the blocks shows, and PGD's floor runs in the same blocks. On a CPU "
        "our attacks run the convolutions with NHWC weights (`Execution.channels_last`, "
        "default on a CPU; the floor is the model as it is, NCHW), measured against NCHW "
        "per model "
        "below. "
        "Calls run interleaved in one process, the order alternating each round; figures "
        "are medians. Like for like, both sides are timed to a per-sample success mask: "
        "ours returns one; torchattacks returns only x_adv, so its time includes one "
        "no-grad forward of the model on its x_adv and the argmax comparison (\"to "
        "mask\"). Speed ratio = torchattacks' median time to mask / ours (>1: ours "
        "faster); the targets use it. The time of torchattacks' call alone is read inside "
        "the same calls and shown beside it (\"attack only\", with our speed over it). "
        "Where both sides run the same passes (FGSM; CW at these settings; PGD while "
        "samples survive) the ratio sits near 1x and the machine's noise decides its "
        "second decimal: single calls swing by tens of percent on a loaded machine (see "
        "the per-round times in attacks.json), so read 0.95-1.05x as a tie. "
        "Robust accuracy = correct on the clean image and on x_adv (`evaluate`'s "
        "definition), computed the same way from torchattacks' x_adv. Settings: FGSM and "
        f"PGD-{PGD_STEPS} at the paper's eps 20/255 and 80/255, PGD step 2.5*eps/"
        f"{PGD_STEPS} on both sides, random start on both; CW L2 with c={CW_C:g}, "
        f"kappa 0, {CW_STEPS} Adam steps at lr {CW_LR:g}, no binary search (ours: "
        "binary_steps=1, abort_early=False; torchattacks' CW stops by itself when its "
        f"loss rises); DeepFool {DF_STEPS} steps, overshoot {DF_OVERSHOOT:g}.",
        "",
    ]
    for title, meta, table in sections:
        lines += [f"## {title}", ""]
        lines.append(
            f"n = {meta['n']} test images; {meta['rounds_note']}. Clean accuracy on them: "
            + "; ".join(f"{m} {_pct(a)}" for m, a in meta["clean_accuracy"].items()) + "."
        )
        lines += ["", *table, ""]
    return "\n".join(lines).rstrip() + "\n"


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits",
                        help="comma-separated dataset names, e.g. digits,npz:/tmp/real/x.npz")
    parser.add_argument("--n", type=int, default=None, help="test images per batch (256)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds per attack (40; fewer, but >= 3, for slow ones)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed rounds per attack before rounds are cut (40)")
    add_machine_args(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results folder (default {RESULTS}; --quick writes nothing "
                             "unless --out is given)")
    parser.add_argument("--quick", action="store_true", help="small n and repeats: smoke check")
    parser.add_argument("--attacks", default=",".join(KINDS),
                        help=f"comma-separated subset of {','.join(KINDS)} (a subset writes "
                             "nothing unless --out is given)")
    parser.add_argument("--malloc", choices=("retain", "system"), default="retain",
                        help="retain: keep freed memory for reuse, as the aerobust command "
                             "does (aerobust.allocator; applies to both libraries); system: "
                             "glibc's defaults")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    args.n = args.n if args.n is not None else (32 if args.quick else 256)
    args.repeats = args.repeats if args.repeats is not None else (3 if args.quick else 40)
    args.budget = args.budget if args.budget is not None else (5.0 if args.quick else 40.0)
    if args.n < 1 or args.repeats < 1 or args.budget <= 0:
        parser.error("--n and --repeats must be >= 1 and --budget > 0")
    wanted = {a.strip().lower() for a in args.attacks.split(",") if a.strip()}
    args.kinds = tuple(k for k in KINDS if k in wanted)
    if wanted - set(KINDS) or not args.kinds:
        parser.error(f"--attacks takes a subset of {','.join(KINDS)}, got {args.attacks!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import torchattacks  # noqa: F401  (imports without torchvision: checked for 3.5.1)
    except ImportError:
        print("benchmarks/attacks.py needs torchattacks: pip install --no-deps torchattacks",
              file=sys.stderr)
        return 2
    malloc = retain_freed_memory() if args.malloc == "retain" else None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    partial = args.quick or args.kinds != KINDS
    write_dir = args.out if args.out is not None else (None if partial else RESULTS)

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    report: dict[str, Any] = {
        "command": shlex.join(["python", "benchmarks/attacks.py", *sys.argv[1:]])
        if argv is None else shlex.join(["python", "benchmarks/attacks.py", *argv]),
        "machine": machine_info(threads, malloc),
        "settings": {"n": args.n, "repeats": args.repeats, "budget_seconds": args.budget,
                     "epsilons_255": list(EPSILONS), "pgd_steps": PGD_STEPS,
                     "cw": {"c": CW_C, "steps": CW_STEPS, "lr": CW_LR},
                     "deepfool": {"steps": DF_STEPS, "overshoot": DF_OVERSHOOT}},
        "datasets": {},
    }
    log(f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} CPUs")
    sections = []
    try:
        for name in [d.strip() for d in args.dataset.split(",") if d.strip()]:
            dataset = load_dataset(name)
            models = load_models(dataset, args.store or RunStore().root, not args.quiet)
            x, y = dataset.x_test[: args.n].contiguous(), dataset.y_test[: args.n].contiguous()
            entry: dict[str, Any] = {"n": len(x), "models": {}}
            clean = {}
            for label, (model, run) in models.items():
                log(f"{name}: {label} ({run})")
                rows = bench_model(model, x, y, args.repeats, args.budget, log, args.kinds)
                clean[label] = clean_accuracy(model, x, y)
                entry["models"][label] = {"run": run, "clean_accuracy": clean[label],
                                          "rows": [r.to_dict() for r in rows]}
                table = markdown_table(rows)
                if "deepfool" in args.kinds:
                    paths = deepfool_gradients(model, x, max(3, min(args.repeats, 5)))
                    entry["models"][label]["deepfool_gradients"] = paths
                    table += deepfool_gradient_lines(paths, len(x))
                    log("\n".join(table[-1:]))
                layout = layout_compare(model, x, y, max(3, min(args.repeats, 5)), args.kinds)
                entry["models"][label]["layout"] = layout
                table += layout_lines(layout, len(x))
                log("\n".join(table[-1:]))
                if args.kinds == KINDS:
                    sweep = block_sweep(model, x, y, max(1, min(args.repeats, 3)))
                    entry["models"][label]["block_sweep"] = sweep
                    table += block_sweep_lines(sweep, len(x))
                    log("\n".join(table[-len(sweep):]))
                sections.append((f"{name}: {label}", {
                    "n": len(x), "clean_accuracy": {label: clean[label]},
                    "rounds_note": f"{min(len(r.ours_seconds) for r in rows)}-"
                                   f"{max(len(r.ours_seconds) for r in rows)} timed rounds "
                                   "per attack",
                }, table))
            report["datasets"][name] = entry
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    text = render(report, sections)
    print(text)
    if write_dir is not None:
        atomic.write_text(write_dir / "attacks.md", text)
        atomic.write_json(write_dir / "attacks.json", report)
        log(f"wrote {write_dir / 'attacks.md'} and {write_dir / 'attacks.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
