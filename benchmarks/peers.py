"""Benchmark: our white-box attacks beside all three peers (torchattacks, foolbox 3, ART).

Why: a researcher picks whichever library is fastest and strongest, so ours must be
measured against each of them, not only against the slowest. For FGSM, PGD-40, CW
(matched settings, and with its binary search) and DeepFool, every library attacks the
same trained LeNet5 (C) and AE-C, the same test images, as a user calls it: one call per
batch of ``--batch`` images. The calls of one setting run interleaved in one process
(order reversed every other round), so machine noise hits all of them alike; medians are
reported.

Like for like, every library is timed *to a per-sample success mask*: ours and foolbox
return one; torchattacks and ART return only x_adv, so their time includes one no-grad
forward on it and the argmax comparison. Robust accuracy and median L2 are computed the
same way from every library's x_adv (correct clean and at x_adv; L2 over the samples
turned from correct to wrong). Each row also gives our time as a multiple of the floor,
one plain forward+backward pass (input gradient only) over the same images in the same
batches, beside the passes the algorithm may need.

    python benchmarks/peers.py                                # digits + real MNIST
    python benchmarks/peers.py --quick                        # smoke check, writes nothing
    python benchmarks/peers.py --attacks pgd --datasets mnist # a subset, writes nothing

The real MNIST part uses the 8,000 / 2,000 split of the official test images
(``--mnist-dir``, default ../shared/data/mnist); without those files it is skipped with
one line. The peers are benchmark-only dependencies, installed without their own
requirements so that nothing pulls another torch::

    pip install --no-deps torchattacks==3.5.1 foolbox==3.3.4 eagerpy==0.30.0 \\
        adversarial-robustness-toolbox==1.20.1 GitPython gitdb smmap
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness
import numpy as np
import torch
from torch import Tensor, nn

from aerobust.allocator import retain_freed_memory
from aerobust.attacks import CW, FGSM, PGD, DeepFool
from aerobust.attacks.base import Attack
from aerobust.data import load_dataset
from aerobust.data.npz import load_npz
from aerobust.errors import UserError
from aerobust.training import RunStore

RESULTS = harness.RESULTS_ROOT / "peers"
PEERS = ("torchattacks", "foolbox", "art")
KINDS = ("fgsm", "pgd", "cw", "cw-search", "deepfool")
EPSILONS = (20, 80)  # the paper's MNIST epsilons, 0-255 units
PGD_STEPS = 40
CW_C, CW_STEPS, CW_LR = 1.0, 100, 0.01  # matched CW: no binary search
SEARCH_STEPS, SEARCH_BINARY, SEARCH_C = 1000, 9, 1e-3  # the paper's CW (docs/design.md#attacks)
DF_STEPS, DF_OVERSHOOT = 50, 0.02
ACC_SLACK = 0.005  # robust accuracy may exceed the strongest peer's by 0.5 points
L2_SLACK = 1.02  # median L2 may exceed the best peer's by 2%
MIN_RATIO = {"fgsm": 1.0, "pgd": 2.0, "cw": 1.5, "cw-search": 10.0, "deepfool": 1.5}
# the peer a kind's speed target is measured against (None: the fastest peer)
TARGET_PEER = {"cw-search": "art", "deepfool": "foolbox"}

Peer = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]  # (x, y) -> (x_adv, success)
# (frozen model copy, input shape, classes) -> its call
Build = Callable[[nn.Module, tuple[int, ...], int], Peer]


@dataclass
class Case:
    """One attack setting: ours, and a builder per peer that gets a frozen copy of the
    model (with its input shape and class count) and returns a call ``(x, y) ->
    (x_adv, success)``."""

    name: str
    kind: str
    ours: Attack
    peers: dict[str, Build]
    passes: str  # the forward+backward passes the algorithm may need, in words


@dataclass
class Row:
    """One setting on one model: every library's times, strength and the target."""

    attack: str
    kind: str
    n: int
    batch: int
    passes: str
    seconds: dict[str, list[float]]  # library -> timed rounds over all n images
    robust: dict[str, float]
    median_l2: dict[str, float | None]  # over the samples each library flipped
    # over the samples every library flipped: the like-for-like figure (a library that
    # flips fewer samples flips the easy ones, and its own median looks smaller)
    common_l2: dict[str, float | None] = field(default_factory=dict)
    common_n: int = 0
    floor_seconds: list[float] = field(default_factory=list)
    ours_forwards: int = 0
    ours_backwards: int = 0

    def ips(self, lib: str) -> float:
        return self.n / statistics.median(self.seconds[lib])

    @property
    def peers(self) -> list[str]:
        return [lib for lib in self.seconds if lib != "ours"]

    @property
    def reference(self) -> str:
        """The peer the speed target compares with: a named one, else the fastest."""
        named = TARGET_PEER.get(self.kind)
        if named in self.seconds:
            return named
        return max(self.peers, key=self.ips)

    @property
    def ratio(self) -> float:
        return self.ips("ours") / self.ips(self.reference)

    @property
    def floor_multiple(self) -> float:
        return statistics.median(self.seconds["ours"]) / statistics.median(self.floor_seconds)

    def misses(self) -> list[str]:
        """The parts of the issue's target this row missed, with the figures."""
        out = []
        need = MIN_RATIO[self.kind]
        if self.ratio < need:
            out.append(f"speed {self.ratio:.2f}x {self.reference} < {need:g}x")
        strongest = min(self.robust[p] for p in self.peers)
        if self.robust["ours"] > strongest + ACC_SLACK + 1e-9:
            out.append(f"robust {harness.pct(self.robust['ours'])} > strongest peer "
                       f"{harness.pct(strongest)} + 0.5")
        if self.kind in ("cw", "cw-search", "deepfool") and self.common_n:
            best = min(self.common_l2[p] for p in self.peers)
            ours = self.common_l2["ours"]
            if ours > best * L2_SLACK:
                out.append(f"median L2 {ours:.3f} > best peer {best:.3f} + 2% (on the "
                           f"{self.common_n} samples all flipped)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_second": {lib: self.ips(lib) for lib in self.seconds},
                "reference_peer": self.reference, "speed_ratio": self.ratio,
                "target_ratio": MIN_RATIO[self.kind], "floor_multiple": self.floor_multiple,
                "missed": self.misses(), "met": not self.misses()}


def _mask(model: nn.Module, x_adv: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x_adv).argmax(dim=1) != y


def torchattacks_peer(cls_name: str, **kwargs: Any) -> Build:
    def build(model: nn.Module, shape: tuple[int, ...], classes: int) -> Peer:
        import torchattacks

        attack = getattr(torchattacks, cls_name)(model, **kwargs)

        def call(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            adv = attack(x, y)
            return adv, _mask(model, adv, y)
        return call
    return build


def foolbox_peer(cls_name: str, eps: float | None, **kwargs: Any) -> Build:
    def build(model: nn.Module, shape: tuple[int, ...], classes: int) -> Peer:
        import foolbox

        fmodel = foolbox.PyTorchModel(model, bounds=(0.0, 1.0), device="cpu")
        attack = getattr(foolbox.attacks, cls_name)(**kwargs)

        def call(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            _, clipped, success = attack(fmodel, x, y, epsilons=eps)
            if eps is None:
                # A minimisation attack returns an all-zero image for a sample it never
                # fooled, and judges success on that image: such a sample keeps its
                # input here, as every other library returns it.
                zeros = (clipped.flatten(1) == 0).all(dim=1) & (x.flatten(1) != 0).any(dim=1)
                clipped = torch.where(zeros[:, None, None, None], x, clipped)
                success = success & ~zeros
            return clipped, success
        return call
    return build


def art_peer(cls_name: str, give_labels: bool = True, **kwargs: Any) -> Build:
    """ART works on numpy arrays: the conversions are part of what its user pays."""
    def build(model: nn.Module, shape: tuple[int, ...], classes: int) -> Peer:
        from art.attacks import evasion
        from art.estimators.classification import PyTorchClassifier

        estimator = PyTorchClassifier(model, nn.CrossEntropyLoss(), input_shape=shape,
                                      nb_classes=classes, clip_values=(0.0, 1.0),
                                      device_type="cpu")
        attack = getattr(evasion, cls_name)(estimator, **kwargs)

        def call(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            labels = np.eye(classes, dtype=np.float32)[y.numpy()] if give_labels else None
            adv = torch.from_numpy(attack.generate(x.numpy(), y=labels)).float()
            return adv, _mask(model, adv, y)
        return call
    return build


def cases(batch: int, kinds: tuple[str, ...], cw_lr: float = CW_LR) -> list[Case]:
    """Every setting, with the peers' arguments matched to ours (``cw_lr``: the step
    size every library's matched CW gets)."""
    out: list[Case] = []
    if "fgsm" in kinds:
        for e in EPSILONS:
            eps = e / 255
            out.append(Case(f"FGSM eps={e}/255", "fgsm", FGSM(eps=eps), {
                "torchattacks": torchattacks_peer("FGSM", eps=eps),
                "foolbox": foolbox_peer("FGSM", eps),
                "art": art_peer("FastGradientMethod", eps=eps, batch_size=batch),
            }, "1"))
    if "pgd" in kinds:
        for e in EPSILONS:
            eps = e / 255
            alpha = 2.5 * eps / PGD_STEPS  # our default step, given to every library
            out.append(Case(f"PGD-{PGD_STEPS} eps={e}/255", "pgd",
                            PGD(eps=eps, steps=PGD_STEPS, step_size=alpha, random_start=True), {
                "torchattacks": torchattacks_peer("PGD", eps=eps, alpha=alpha, steps=PGD_STEPS,
                                                  random_start=True),
                "foolbox": foolbox_peer("LinfPGD", eps, abs_stepsize=alpha, steps=PGD_STEPS,
                                        random_start=True),
                "art": art_peer("ProjectedGradientDescentPyTorch", verbose=False, eps=eps,
                                eps_step=alpha, max_iter=PGD_STEPS, num_random_init=1,
                                batch_size=batch),
            }, str(PGD_STEPS)))
    if "cw" in kinds:
        out.append(Case(
            f"CW c={CW_C:g} steps={CW_STEPS}" + (f" lr={cw_lr:g}" if cw_lr != CW_LR else ""),
            "cw",
            CW(confidence=0.0, c_init=CW_C, binary_steps=1, steps=CW_STEPS, lr=cw_lr,
               abort_early=False), {
                "torchattacks": torchattacks_peer("CW", c=CW_C, kappa=0, steps=CW_STEPS,
                                                  lr=cw_lr),
                "foolbox": foolbox_peer("L2CarliniWagnerAttack", None, binary_search_steps=1,
                                        steps=CW_STEPS, stepsize=cw_lr, confidence=0,
                                        initial_const=CW_C, abort_early=False),
                "art": art_peer("CarliniL2Method", verbose=False, confidence=0.0,
                                learning_rate=cw_lr, binary_search_steps=1,
                                max_iter=CW_STEPS, initial_const=CW_C, batch_size=batch),
            }, str(CW_STEPS)))
    if "cw-search" in kinds:
        out.append(Case(
            f"CW {SEARCH_BINARY}x{SEARCH_STEPS} binary search", "cw-search",
            CW(confidence=0.0, c_init=SEARCH_C, binary_steps=SEARCH_BINARY, steps=SEARCH_STEPS,
               lr=CW_LR), {
                "art": art_peer("CarliniL2Method", verbose=False, confidence=0.0,
                                learning_rate=CW_LR, binary_search_steps=SEARCH_BINARY,
                                max_iter=SEARCH_STEPS, initial_const=SEARCH_C,
                                batch_size=batch),
            }, f"<= {SEARCH_BINARY * SEARCH_STEPS}"))
    if "deepfool" in kinds:
        out.append(Case(
            f"DeepFool steps={DF_STEPS}", "deepfool",
            DeepFool(steps=DF_STEPS, overshoot=DF_OVERSHOOT), {
                "torchattacks": torchattacks_peer("DeepFool", steps=DF_STEPS,
                                                  overshoot=DF_OVERSHOOT),
                "foolbox": foolbox_peer("L2DeepFoolAttack", None, steps=DF_STEPS,
                                        overshoot=DF_OVERSHOOT, candidates=10),
                "art": art_peer("DeepFool", give_labels=False, verbose=False, max_iter=DF_STEPS,
                                epsilon=DF_OVERSHOOT, nb_grads=10, batch_size=batch),
            }, f"<= {DF_STEPS} x (1 forward + 9 backward)"))
    return out


def batches(x: Tensor, y: Tensor, size: int) -> list[tuple[Tensor, Tensor]]:
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


def bench(case: Case, model: nn.Module, x: Tensor, y: Tensor, batch: int, rounds: int,
          budget: float, log: Callable[[str], None]) -> Row:
    """Warm every library up once (that call also gives its x_adv, hence its strength),
    then time whole sweeps over the images interleaved, as many rounds as the budget
    allows, without the peers whose warm-up alone was over it (their warm-up is their
    timing); where not even one round fits, the warm-up calls are the timings."""
    parts = batches(x, y, batch)
    ours_counts = [0, 0]

    def ours() -> Tensor:
        advs = []
        for xb, yb in parts:
            result = case.ours(model, xb, yb)
            ours_counts[0] += result.forwards
            ours_counts[1] += result.backwards
            advs.append(result.x_adv)
        return torch.cat(advs)

    def peer_sweep(call: Peer) -> Callable[[], Tensor]:
        return lambda: torch.cat([call(xb, yb)[0] for xb, yb in parts])

    floor_model = harness.frozen_copy(model)
    calls: dict[str, Callable[[], Tensor]] = {"ours": ours}
    with torch.no_grad():
        classes = int(model(x[:1]).shape[1])
    for peer, build in case.peers.items():
        calls[peer] = peer_sweep(build(harness.frozen_copy(model), tuple(x.shape[1:]), classes))
    warm: dict[str, float] = {}
    robust: dict[str, float] = {}
    median_l2: dict[str, float | None] = {}
    flipped: dict[str, Tensor] = {}
    l2: dict[str, Tensor] = {}
    with torch.no_grad():
        clean = model(x).argmax(dim=1) == y
    for lib, call in calls.items():
        torch.manual_seed(0)
        start = time.perf_counter()
        adv = call()
        warm[lib] = time.perf_counter() - start
        with torch.no_grad():
            fooled = model(adv).argmax(dim=1) != y
        # robust: correct clean and at x_adv; L2 over the samples turned wrong (as
        # ``attacks.robust_of``, from the one forward on x_adv)
        flipped[lib] = clean & fooled
        l2[lib] = (adv - x).flatten(1).norm(dim=1).double()
        robust[lib] = (clean & ~fooled).double().mean().item()
        median_l2[lib] = (l2[lib][flipped[lib]].median().item() if flipped[lib].any()
                          else None)
        log(f"    warm-up {lib}: {warm[lib]:.1f} s, robust {harness.pct(robust[lib])}")
    common = torch.stack(list(flipped.values())).all(dim=0)
    common_l2 = ({lib: l2[lib][common].median().item() for lib in calls}
                 if common.any() else {})
    forwards, backwards = ours_counts
    ours_counts[:] = [0, 0]
    timed: dict[str, Callable[[], object]] = dict(calls)
    timed["floor"] = lambda: harness.floor_pass(floor_model, x, y, 1, batch)
    # A peer whose one call alone is over the budget (ART's CW) is timed by that call
    # and left out of the rounds, so that it does not cut the others to one call each.
    slow = [lib for lib in case.peers if warm[lib] > budget]
    for lib in slow:
        del timed[lib]
    n_rounds = min(rounds, int(budget / max(sum(warm[lib] for lib in timed if lib in warm),
                                            1e-9)))
    if n_rounds == 0:  # ours alone takes minutes (CW search): the warm-up is the figure
        times = {lib: [seconds] for lib, seconds in warm.items()}
        times["floor"] = harness.interleaved({"floor": timed["floor"]}, 3)["floor"]
    else:
        times = {**harness.interleaved(timed, n_rounds), **{lib: [warm[lib]] for lib in slow}}
    floor = times.pop("floor")
    return Row(attack=case.name, kind=case.kind, n=len(x), batch=batch, passes=case.passes,
               seconds=times, robust=robust, median_l2=median_l2, common_l2=common_l2,
               common_n=int(common.sum()), floor_seconds=floor,
               ours_forwards=forwards, ours_backwards=backwards)


def table(rows: list[Row]) -> list[str]:
    libs = ["ours", *PEERS]
    head = ("| attack | n | " + " | ".join(f"{lib} img/s" for lib in libs)
            + " | ratio (vs) | target | " + " | ".join(f"{lib} robust" for lib in libs)
            + " | median L2 where all flipped (ours / best peer) | ours x floor "
              "| passes ours ran (fwd/bwd) | algorithm's passes | met? |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for row in rows:
        speeds = [f"{row.ips(lib):,.1f}" if lib in row.seconds else "-" for lib in libs]
        accs = [harness.pct(row.robust[lib]) if lib in row.robust else "-" for lib in libs]
        l2 = "-"
        if row.kind in ("cw", "cw-search", "deepfool") and row.common_n:
            best = min(row.peers, key=lambda p: row.common_l2[p])
            l2 = (f"{row.common_l2['ours']:.3f} / {row.common_l2[best]:.3f} ({best}), "
                  f"{row.common_n} samples")
        miss = row.misses()
        lines.append(
            f"| {row.attack} | {row.n} | " + " | ".join(speeds)
            + f" | **{row.ratio:.2f}x** ({row.reference}) | >= {MIN_RATIO[row.kind]:g}x | "
            + " | ".join(accs) + f" | {l2} | {row.floor_multiple:.1f} "
            f"| {row.ours_forwards}/{row.ours_backwards} | {row.passes} "
            f"| {'yes' if not miss else '**NO**: ' + '; '.join(miss)} |")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="digits,mnist",
                        help="comma-separated: digits, mnist (the real 8k/2k split from "
                             "--mnist-dir), or npz:PATH")
    parser.add_argument("--mnist-dir", type=Path, default=harness.SHARED_MNIST,
                        help="folder with the official MNIST test files (default "
                             f"{harness.SHARED_MNIST})")
    parser.add_argument("--n", type=int, default=None,
                        help="test images for FGSM and PGD (1000; digits has 360)")
    parser.add_argument("--n-slow", type=int, default=None,
                        help="test images for CW and DeepFool (300)")
    parser.add_argument("--n-search", type=int, default=None,
                        help="test images for CW with binary search (10)")
    parser.add_argument("--search-on", default="mnist",
                        help="datasets where CW with binary search runs (mnist; ART's takes "
                             "about a minute per image on LeNet5)")
    parser.add_argument("--batch", type=int, default=250, help="images per call (250)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds at most (5)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed rounds per setting before rounds are cut (120)")
    harness.add_machine_args(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results folder (default {RESULTS}; --quick, --attacks or "
                             "--cw-lr write nothing unless --out is given)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny n, one round, no CW search unless named: smoke check")
    parser.add_argument("--attacks", default=None,
                        help=f"comma-separated subset of {','.join(KINDS)} (default: all)")
    parser.add_argument("--cw-lr", type=float, default=CW_LR,
                        help=f"step size of the matched CW, the same for every library "
                             f"({CW_LR:g}, the reference's; ART's line search starts there)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    quick = args.quick
    args.n = args.n or (24 if quick else 1000)
    args.n_slow = args.n_slow or (12 if quick else 300)
    args.n_search = args.n_search or (4 if quick else 10)
    args.rounds = args.rounds or (1 if quick else 5)
    args.budget = args.budget or (1.0 if quick else 120.0)
    if min(args.n, args.n_slow, args.n_search, args.batch, args.rounds) < 1 or args.budget <= 0:
        parser.error("--n, --n-slow, --n-search, --batch and --rounds must be >= 1, "
                     "--budget > 0")
    if not args.cw_lr > 0:
        parser.error("--cw-lr must be > 0")
    if args.attacks is None:
        args.attacks = ",".join(k for k in KINDS if k != "cw-search" or not quick)
    wanted = {a.strip().lower() for a in args.attacks.split(",") if a.strip()}
    args.kinds = tuple(k for k in KINDS if k in wanted)
    if wanted - set(KINDS) or not args.kinds:
        parser.error(f"--attacks takes a subset of {','.join(KINDS)}, got {args.attacks!r}")
    return args


def render(report: dict[str, Any], sections: list[tuple[str, str, list[str]]]) -> str:
    info = report["machine"]
    lines = [
        "# White-box attacks: aerobust vs torchattacks, foolbox and ART",
        "",
        f"Command: `{report['command']}`",
        "",
        harness.machine_line(
            info, {"torchattacks": "torchattacks", "foolbox": "foolbox", "art": "ART"}, None),
        "",
        "Every library attacks the same weights (each peer its own frozen eval-mode copy) "
        f"and the same first n test images, one call per batch of {report['settings']['batch']}"
        " as a user calls it, timed to a per-sample success mask (torchattacks and ART: their"
        " call plus one no-grad forward on x_adv). Calls of one setting run interleaved in "
        "one process, the order reversed every other round; speeds are medians over the "
        "rounds (a peer whose one call is over the budget, ART's CW, is timed by its "
        "warm-up call and left out of the rounds; where even the rest would not fit "
        "one round, each library's one warm-up call, made in the same order, is its "
        "timing). Ratio = our images/s over the "
        "reference peer's: the fastest peer, except "
        "DeepFool (vs foolbox) and CW with binary search (vs ART), as the targets say. "
        "Robust accuracy (correct clean and at x_adv) and median L2 come from every "
        "library's x_adv alike; the L2 column compares the medians over the samples that "
        "every library turned from correct to wrong (the JSON also has each library's "
        "median over its own flipped samples, which favours a library that flips only the "
        "easy ones). \"ours x "
        "floor\" = our time over one plain forward+backward pass (input gradient only) "
        "over the same images in the same batches, beside the passes the algorithm may "
        "need. Settings: FGSM and PGD-40 at eps 20/255 and 80/255, PGD step 2.5*eps/40 "
        f"and a random start everywhere; CW L2 c={CW_C:g}, kappa 0, {CW_STEPS} Adam steps "
        f"at lr {report['settings']['cw']['lr']:g} with no binary search (foolbox "
        "abort_early off; torchattacks "
        f"stops by itself when its loss rises; ART runs its own step-size line search); CW "
        f"with binary search {SEARCH_BINARY} x {SEARCH_STEPS} from c={SEARCH_C:g} (ours "
        f"with its early abort, as the reference); DeepFool {DF_STEPS} steps, overshoot "
        f"{DF_OVERSHOOT:g}, all 10 classes as candidates. foolbox's CW returns an all-zero "
        "image for a sample it never fooled (and counts it fooled when the "
        "model misclassifies that black image); here such a sample keeps its input, as "
        "the other libraries return it, so a black image is not counted as an attack's "
        "find.",
        "",
    ]
    for title, meta, body in sections:
        lines += [f"## {title}", "", meta, "", *body, ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    absent = harness.missing(PEERS)
    if absent:
        print(f"benchmarks/peers.py needs {', '.join(absent)}: see the install command at the "
              "top of this file", file=sys.stderr)
        return 2
    retain_freed_memory()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    partial = args.quick or args.kinds != KINDS or args.cw_lr != CW_LR
    write_dir = args.out if args.out is not None else (None if partial else RESULTS)

    log = harness.logger(args.quiet)
    machine = harness.machine_info(torch.get_num_threads(), None, PEERS)
    report: dict[str, Any] = {
        "command": harness.command("peers.py", argv), "machine": machine, "datasets": {},
        "settings": {"n": args.n, "n_slow": args.n_slow, "n_search": args.n_search,
                     "batch": args.batch, "rounds": args.rounds, "budget_seconds": args.budget,
                     "epsilons_255": list(EPSILONS), "pgd_steps": PGD_STEPS,
                     "cw": {"c": CW_C, "steps": CW_STEPS, "lr": args.cw_lr},
                     "cw_search": {"binary_steps": SEARCH_BINARY, "steps": SEARCH_STEPS,
                                   "c_init": SEARCH_C, "lr": CW_LR},
                     "deepfool": {"steps": DF_STEPS, "overshoot": DF_OVERSHOOT}},
    }
    sections = []
    search_on = {d.strip() for d in args.search_on.split(",")}
    started = time.perf_counter()
    try:
        for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            if name == "mnist":
                dataset = harness.mnist_split(args.mnist_dir)
                if dataset is None:
                    log(f"real MNIST skipped: no official MNIST test files in {args.mnist_dir}")
                    report["datasets"][name] = {"skipped": f"no MNIST files in {args.mnist_dir}"}
                    continue
            elif name.startswith("npz:"):
                dataset = load_npz(name[4:])
            else:
                dataset = load_dataset(name)
            models = harness.c_and_ae_c(dataset, args.store or RunStore().root, not args.quiet)
            entry: dict[str, Any] = {"checksum": dataset.checksum, "models": {}}
            for label, (model, run) in models.items():
                log(f"{name}: {label}")
                x_all = dataset.x_test.contiguous()
                y_all = dataset.y_test.contiguous()
                rows = []
                kinds = tuple(k for k in args.kinds if k != "cw-search" or name in search_on)
                for case in cases(args.batch, kinds, args.cw_lr):
                    n = {"cw": args.n_slow, "deepfool": args.n_slow,
                         "cw-search": args.n_search}.get(case.kind, args.n)
                    x, y = x_all[:n], y_all[:n]
                    log(f"  {case.name} on {len(x)} images")
                    row = bench(case, model, x, y, args.batch, args.rounds, args.budget, log)
                    log(f"  -> ours {row.ips('ours'):,.1f} img/s, {row.ratio:.2f}x "
                        f"{row.reference}; " + (", ".join(row.misses()) or "met"))
                    rows.append(row)
                with torch.no_grad():
                    clean = (model(x_all[:args.n]).argmax(dim=1) == y_all[:args.n])
                entry["models"][label] = {"run": run, "rows": [r.to_dict() for r in rows],
                                          "clean_accuracy": clean.double().mean().item()}
                rounds = sorted({len(r.seconds["ours"]) for r in rows})
                meta = (f"Clean accuracy on the first {min(args.n, len(x_all))} test images: "
                        f"{harness.pct(clean.double().mean().item())}; "
                        f"{'-'.join(map(str, (rounds[0], rounds[-1])))} timed rounds per "
                        f"setting; weights: `{run}`.")
                sections.append((f"{name}: {label}", meta, table(rows)))
            report["datasets"][name] = entry
            write(report, sections, write_dir, started, log)  # each dataset kept
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(write(report, sections, write_dir, started, log, finished=True))
    return 0


def write(report: dict[str, Any], sections: list[tuple[str, str, list[str]]],
          write_dir: Path | None, started: float, log: Callable[[str], None],
          finished: bool = False) -> str:
    """The page and the JSON so far, written atomically (a long run keeps each dataset)."""
    harness.finish(report)
    report["seconds"] = time.perf_counter() - started
    report["finished"] = (datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds") if finished else None)
    text = render(report, sections)
    if write_dir is not None:
        harness.write_results(write_dir, "peers", text, report, log)
    return text


if __name__ == "__main__":
    sys.exit(main())
