"""What ``aerobust reproduce --preset mnist --only sensitivity`` costs, before it runs.

The sweep at the paper's size (60,000 training images) cannot be timed by running it on a
machine that is busy with the main run, so this script estimates it from parts measured
here: per model, the time of one forward and of one forward+backward pass per image (one
torch thread, blocks of ``--block`` images in NHWC, as attacks run on a CPU, through the
project's own runner), and of one training step per image (batches of 128, Adam). Every
cell of the sweep's plan is then priced by counting its passes:

- the clean forward and the runner's judging forward of every attack: 2 forwards;
- FGSM one forward+backward; PGD ``restarts x steps``; CW ``binary_steps x steps`` (an
  upper bound: abort-early cut 21% on the 8k/2k run); DeepFool ``steps + 1`` forwards and
  ``steps x 9`` backwards (every candidate class of MNIST), also an upper bound: a sample
  leaves DeepFool and PGD once fooled;
- a transfer cell crafts on its substitute once per (substitute, attack) and scores on the
  target with 2 forwards (and 2 on the substitute);
- a G reading one forward+backward (on adversarial inputs, PGD crafted once per model).

A network the main run (the preset's other experiments, ``--main-seeds``) trains costs
the sweep nothing; the others train ``epochs x 60,000`` images. The sweep runs as one
experiment, so ``--backend local`` computes its cells one after another at one thread
(stored work always runs at one thread, ``aerobust.threads``): the 1-core total. With
``--backend ray`` on the 2 cores, trainings and per-model cell groups run side by side:
the 2-core figure is a greedy schedule of those tasks (Ray's own ``chunks`` of the
cells) on two workers.

    python benchmarks/sensitivity_cost.py --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from harness import SHARED_MNIST
from torch import nn

from aerobust import attacks
from aerobust.attacks.model import attack_mode
from aerobust.attacks.runner import channels_last_convs
from aerobust.backends.ray import chunks
from aerobust.experiments import ExperimentConfig, Workspace
from aerobust.experiments.sensitivity import VARIANTS, variant_model
from aerobust.experiments.spec import Cell, Model, Net
from aerobust.models import AEClassifier, build_model
from aerobust.names import EXPERIMENT_NAMES

TRAIN_IMAGES = 60_000
TRAIN_BATCH = 128
CANDIDATES = 9  # DeepFool's backwards per step on MNIST: every class but the reference


# ------------------------------------------------------------------ measured costs


def _timed(fn: Any, repeats: int) -> float:
    """The fastest of ``repeats`` runs of ``fn`` in CPU seconds of this process (after
    one warm-up run): one thread, so CPU time is the time it takes alone, which wall
    time on a machine busy with other runs is not."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def attack_costs(model: nn.Module, block: int, repeats: int) -> tuple[float, float]:
    """(forward, forward+backward) ms per image, in blocks of ``block`` as attacks run:
    the forward under ``attack_mode`` in NHWC without grad, the forward+backward as one
    PGD step through the runner (PGD-10 with ``keep="last"``: every step runs)."""
    x = torch.rand(block, 1, 28, 28)
    y = torch.randint(0, 10, (block,))
    steps = 10
    pgd = attacks.get("pgd", eps=0.3, steps=steps, keep="last")
    execution = attacks.Execution(block_size=block)

    def forward() -> None:
        with attack_mode(model), channels_last_convs(model), torch.no_grad():
            model(x)

    f = _timed(forward, repeats) / block
    fb = _timed(lambda: pgd(model, x, y, execution=execution), repeats) / (steps * block)
    return 1e3 * f, 1e3 * fb


def train_cost(model: nn.Module, loss: str, repeats: int) -> float:
    """ms per training image of one Adam step on a batch of 128 in train mode: ``ce`` on
    the logits, ``mse`` of an AE's reconstruction, ``both`` (CE + reconstruction from one
    encoder pass, Table 3's lambda > 0)."""
    x = torch.rand(TRAIN_BATCH, 1, 28, 28)
    y = torch.randint(0, 10, (TRAIN_BATCH,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        opt.zero_grad()
        if loss == "ce":
            out = F.cross_entropy(model(x), y)
        elif loss == "mse":
            out = F.mse_loss(model(x), x)
        else:
            logits, recon = model.forward_both(x)
            out = F.cross_entropy(logits, y) + F.mse_loss(recon, x)
        out.backward()
        opt.step()

    return 1e3 * _timed(step, repeats) / TRAIN_BATCH


def trained(ws: Workspace, model: Model) -> nn.Module | None:
    """``model`` with its trained weights when the run store has every network of it
    (nothing is trained here), else None."""
    loaded = []
    for net in _nets(model):
        run = ws.store.finished(ws.context.train_spec(net)[0])
        if run is None:
            return None
        loaded.append(run.load("cpu").eval())
    return loaded[0] if len(loaded) == 1 else AEClassifier(loaded[1], loaded[0]).eval()


def deepfool_rates(ws: Workspace, cells: Sequence[Cell], n: int
                   ) -> dict[tuple[str, str], float]:
    """ms per image of each DeepFool setting of the sweep, measured on the first ``n``
    test images of the trained C and AE-C (the preset's networks, where the store has
    them): DeepFool stops a sample once fooled, so its cap is a loose bound."""
    x, y = ws.dataset.x_test[:n], ws.dataset.y_test[:n]
    out: dict[tuple[str, str], float] = {}
    for variant in VARIANTS:
        model = trained(ws, variant_model(ws.setup, variant, ws.config.seed))
        if model is None:
            continue
        for cell in cells:
            spec = cell.params.get("attack", {})
            key = (variant, json.dumps(spec, sort_keys=True))
            if spec.get("name") != "deepfool" or key in out:
                continue
            made = attacks.get("deepfool", **spec["params"])
            start = time.process_time()
            made(model, x, y)
            out[key] = 1e3 * (time.process_time() - start) / n
    return out


def _arch_model(model: Model) -> nn.Module:
    clf = build_model(model.classifier.arch).eval()
    if model.autoencoder is None:
        return clf
    return AEClassifier(build_model(model.autoencoder.arch), clf).eval()


def _model_name(model: Model) -> str:
    name = model.classifier.arch
    return name if model.autoencoder is None else f"{model.autoencoder.arch}+{name}"


# ------------------------------------------------------------------ counted passes


def _attack_passes(spec: dict[str, Any]) -> tuple[float, float, float]:
    """(forwards, forward+backwards, backwards) per image of an attack, upper bounds."""
    p, name = spec["params"], spec["name"]
    if name == "fgsm":
        return 0, 1, 0
    if name == "pgd":
        return 0, p["restarts"] * p["steps"], 0
    if name == "cw":
        return 0, p["binary_steps"] * p["steps"], 0
    if name == "deepfool":
        return p["steps"] + 1, 0, p["steps"] * CANDIDATES
    raise ValueError(f"no pass count for {name}")


def _seconds(passes: tuple[float, float, float], cost: tuple[float, float], n: int) -> float:
    f, fb = cost
    forwards, both, backwards = passes
    return n * (forwards * f + both * fb + backwards * max(fb - f, 0.0)) / 1e3


def _nets(model: Model) -> list[Net]:
    return [net for net in (model.classifier, model.autoencoder) if net is not None]


def _cell_models(cell: Cell) -> list[Model]:
    return [cell.model] + ([cell.substitute] if cell.substitute is not None else [])


def _deepfool_seconds(cell: Cell, costs: dict[str, tuple[float, float]],
                      rates: dict[tuple[str, str], float]) -> float | None:
    """A DeepFool cell's seconds from the measured rate of its setting on the preset's
    C or AE-C, scaled by the pass cost of the cell's own model; None if not measured."""
    variant = "C" if cell.model.autoencoder is None else "AE-C"
    rate = rates.get((variant, json.dumps(cell.params["attack"], sort_keys=True)))
    if rate is None:
        return None
    default = "lenet5" if variant == "C" else "conv-ae+lenet5"
    return cell.params["n"] * rate * costs[_model_name(cell.model)][1] / costs[default][1] / 1e3


def price(cells: Sequence[Cell], costs: dict[str, tuple[float, float]],
          rates: dict[tuple[str, str], float]) -> list[tuple[Cell, float, str]]:
    """Each cell's seconds, and the model whose cell group it runs in (crafting on a
    substitute is charged to the first cell that needs it, as ``Context.crafted``).
    DeepFool at its measured rate where there is one (``deepfool_rates``)."""
    crafted: set[str] = set()
    out = []
    for cell in cells:
        p, n = cell.params, cell.params["n"]
        cost = costs[_model_name(cell.model)]
        seconds = _seconds((2, 0, 0), cost, n)
        group = _model_name(cell.model)
        if cell.task == "attack":
            measured = (_deepfool_seconds(cell, costs, rates)
                        if p["attack"]["name"] == "deepfool" else None)
            seconds += (measured if measured is not None
                        else _seconds(_attack_passes(p["attack"]), cost, n))
        elif cell.task == "transfer":
            sub = cell.substitute
            assert sub is not None
            group = "substitute " + _model_name(sub)
            key = json.dumps([asdict(sub), p["attack"], n], sort_keys=True, default=str)
            sub_cost = costs[_model_name(sub)]
            seconds += _seconds((2, 0, 0), sub_cost, n)
            if key not in crafted:
                crafted.add(key)
                seconds += _seconds(_attack_passes(p["attack"]), sub_cost, n)
        elif cell.task == "gradient-measure":
            seconds += _seconds((0, 1, 0), cost, n)
            if p["inputs"] == "adversarial":
                key = json.dumps([asdict(cell.model), p["attack"], n], sort_keys=True,
                                 default=str)
                if key not in crafted:
                    crafted.add(key)
                    seconds += _seconds(_attack_passes(p["attack"]), cost, n)
        else:
            raise ValueError(f"no price for task {cell.task}")
        out.append((cell, seconds, group))
    return out


def _train_kind(net: Net) -> tuple[str, int]:
    """(loss of the training micro-benchmark, reconstruction steps per CE step)."""
    if net.arch.startswith("conv-ae"):
        return "mse", 0
    method = net.options.get("method")
    if method == "regularization":
        return "both", 0
    return "ce", int(net.options.get("gamma", 0)) if method == "alternating" else 0


# A variant trains like the network it varies (same layers, one changed activation,
# pooling or output): the run store's epochs of that network stand in for it.
BASE_ARCH = {"conv-ae-linear": "conv-ae", "lenet5-1998": "lenet5", "lenet5-norm": "lenet5"}


def stored_epoch_seconds(store_root: Path) -> dict[str, float]:
    """The slowest measured seconds per epoch of each architecture's plain runs (CE or
    MSE, no joint method, no adversarial training) in the run store: the main run's
    trainings, timed while both cores worked."""
    out: dict[str, float] = {}
    for spec_file in store_root.glob("*/spec.json"):
        metrics_file = spec_file.parent / "metrics.json"
        if not metrics_file.is_file():
            continue
        spec = json.loads(spec_file.read_text())
        if spec.get("loss") not in ("ce", "mse") or spec.get("method") != "standard" or (
                spec.get("adversarial")):
            continue
        seconds = json.loads(metrics_file.read_text()).get("seconds_per_epoch")
        if seconds is not None:
            out[spec["arch"]] = max(out.get(spec["arch"], 0.0), float(seconds))
    return out


def training_seconds(net: Net, train_ms: dict[str, float], stored: dict[str, float]
                     ) -> float:
    """Seconds to train ``net`` on the 60,000 images: the measured step cost, or, where
    the store timed a plain run of the same (or the varied) network and that was slower,
    the stored epoch scaled by this net's step cost over the plain one's (an alternating
    latent classifier adds gamma reconstruction steps of its AE per batch)."""
    loss, gamma = _train_kind(net)
    ms = train_ms[f"{net.arch}:{loss}"]
    if gamma:
        ms += gamma * train_ms["conv-ae:mse"]
    epoch = TRAIN_IMAGES * ms / 1e3
    base = BASE_ARCH.get(net.arch, net.arch)
    plain = train_ms.get(f"{net.arch}:{'mse' if loss == 'mse' else 'ce'}")
    if base in stored and plain:
        epoch = max(epoch, stored[base] * ms / plain)
    return net.epochs * epoch


# ------------------------------------------------------------------ schedule


def two_workers(tasks: list[tuple[str, float, list[str]]]) -> float:
    """Wall time of ``(name, seconds, needs)`` tasks on two workers, greedily: whenever a
    worker is free it takes the longest task whose needs have finished."""
    done_at: dict[str, float] = {}
    free = [0.0, 0.0]
    left = sorted(tasks, key=lambda t: -t[1])
    while left:
        worker = min(range(2), key=free.__getitem__)
        now = free[worker]
        ready = [t for t in left if all(done_at.get(n, float("inf")) <= now for n in t[2])]
        if not ready:  # wait for the earliest finishing need
            pending = [done_at[n] for t in left for n in t[2]
                       if n in done_at and done_at[n] > now]
            free[worker] = min(pending) if pending else max(free)
            continue
        name, seconds, _ = ready[0]
        left.remove(ready[0])
        free[worker] = now + seconds
        done_at[name] = free[worker]
    return max(free)


# ------------------------------------------------------------------ report


def _hm(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _group(cell: Cell) -> str:
    site = cell.coords["site"]
    return "t3 (Table 3)" if site.startswith("t3-") else site


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED_MNIST)
    parser.add_argument("--seeds", type=int, default=1, help="the sweep's --seeds")
    parser.add_argument("--main-seeds", type=int, default=1,
                        help="the main run's --seeds (its networks cost the sweep nothing)")
    parser.add_argument("--block", type=int, default=attacks.CPU_BLOCK_SIZE)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calibrate-n", type=int, default=128,
                        help="test images DeepFool's settings are timed on (0: caps only)")
    parser.add_argument("--json", type=Path, help="also write the estimate here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)

    config = ExperimentConfig(dataset="mnist", data_dir=str(args.data_dir), seeds=args.seeds)
    ws = Workspace(config, progress=False)
    cells = ws.cells("sensitivity")
    main_ws = Workspace(ExperimentConfig(dataset="mnist", data_dir=str(args.data_dir),
                                         seeds=args.main_seeds), progress=False)
    main_nets = {json.dumps(asdict(net), sort_keys=True, default=str)
                 for name in EXPERIMENT_NAMES if name != "audit"
                 for cell in main_ws.cells(name) for model in _cell_models(cell)
                 for net in _nets(model)}

    models = {_model_name(m): m for cell in cells for m in _cell_models(cell)}
    costs = {name: attack_costs(_arch_model(m), args.block, args.repeats)
             for name, m in sorted(models.items())}
    nets = {json.dumps(asdict(net), sort_keys=True, default=str): net
            for cell in cells for m in _cell_models(cell) for net in _nets(m)}
    train_ms: dict[str, float] = {}
    for net in nets.values():
        loss, gamma = _train_kind(net)
        plain = "mse" if loss == "mse" else "ce"
        for arch, kind in ((net.arch, loss), (net.arch, plain),
                           *((("conv-ae", "mse"),) if gamma else ())):
            if f"{arch}:{kind}" not in train_ms:
                train_ms[f"{arch}:{kind}"] = train_cost(build_model(arch), kind, args.repeats)

    rates = deepfool_rates(ws, cells, args.calibrate_n) if args.calibrate_n else {}
    priced = price(cells, costs, rates)
    groups: dict[str, list[float]] = defaultdict(list)
    for cell, seconds, _ in priced:
        groups[_group(cell)].append(seconds)
    to_train = {key: net for key, net in nets.items() if key not in main_nets}
    stored = stored_epoch_seconds(ws.store.root)
    trainings = {key: training_seconds(net, train_ms, stored) for key, net in to_train.items()}
    attack_total = sum(s for _, s, _ in priced)
    train_total = sum(trainings.values())

    # --backend ray: a task per training, and the cells in the tasks its ``chunks``
    # makes for two slots (a substitute's crafting charged to the first cell needing it).
    tasks: list[tuple[str, float, list[str]]] = [(k, s, []) for k, s in trainings.items()]
    seconds_of = {id(cell): seconds for cell, seconds, _ in priced}
    for i, chunk in enumerate(chunks([SimpleNamespace(cell=c) for c in cells], slots=2)):
        needs = {k for p in chunk for m in _cell_models(p.cell) for net in _nets(m)
                 if (k := json.dumps(asdict(net), sort_keys=True, default=str)) in trainings}
        tasks.append((f"cells {i}", sum(seconds_of[id(p.cell)] for p in chunk), sorted(needs)))
    two_cores = two_workers(tasks)

    lines = [f"Sensitivity sweep, --seeds {args.seeds}: {len(cells)} cells; per-image costs "
             f"at 1 thread, blocks of {args.block} (ms: forward, forward+backward):"]
    lines += [f"  {name:28s} {f:7.3f} {fb:7.3f}" for name, (f, fb) in costs.items()]
    lines.append("Training, ms per image per epoch: " + ", ".join(
        f"{k} {v:.3f}" for k, v in sorted(train_ms.items())))
    lines.append("Run store, slowest s/epoch of plain runs: " + ", ".join(
        f"{k} {v:.0f}" for k, v in sorted(stored.items())))
    if rates:
        lines.append(f"DeepFool, ms per image on the first {args.calibrate_n} test images of "
                     "the trained C / AE-C:")
        for spec in sorted({k[1] for k in rates}):
            params = {k: v for k, v in json.loads(spec)["params"].items()
                      if k in ("steps", "overshoot", "clip", "judge", "margin")}
            lines.append(f"  {params}: " + " / ".join(
                f"{rates[(v, spec)]:.2f}" if (v, spec) in rates else "-" for v in VARIANTS))
    lines.append("Cells (PGD and CW: upper bounds, every step of every image; DeepFool: "
                 + ("at the rates above" if rates else "every step") + "):")
    for group, secs in groups.items():
        lines.append(f"  {group:14s} {len(secs):3d} cells  {_hm(sum(secs))}")
    lines.append(f"Networks the main run does not train ({len(to_train)}):")
    for key, net in to_train.items():
        options = f" {net.options}" if net.options else ""
        lines.append(f"  {net.arch}{options} seed {net.seed}, {net.epochs} epochs: "
                     f"{_hm(trainings[key])}")
    one_core = attack_total + train_total
    lines.append(f"Total: cells {_hm(attack_total)} + training {_hm(train_total)} = "
                 f"{_hm(one_core)} on 1 core (--backend local); "
                 f"{_hm(two_cores)} on 2 cores (--backend ray, greedy schedule)")
    print("\n".join(lines))
    report = {"seeds": args.seeds, "cells": len(cells), "per_image_ms": costs,
              "deepfool_ms_per_image": {f"{v} {k}": r for (v, k), r in rates.items()},
              "train_ms_per_image": train_ms,
              "groups_s": {g: sum(s) for g, s in groups.items()},
              "training_s": {k: s for k, s in trainings.items()},
              "cells_s": attack_total, "train_s": train_total, "one_core_s": one_core,
              "two_cores_s": two_cores, "stored_epoch_s": stored}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    return report


if __name__ == "__main__":
    main()
