"""The ``aerobust`` command. User errors print one line to stderr and exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aerobust.data.sources import DATA_DIR_HELP
from aerobust.errors import UserError
from aerobust.names import ALL_EXPERIMENTS, EXPERIMENT_NAMES, OPTIONAL_EXPERIMENTS
from aerobust.paths import file_to_write, folder, os_error_line

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in the same one-line form as every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def _common(p: argparse.ArgumentParser, data: bool = True, store: bool = False) -> None:
    if data:
        p.add_argument("--dataset", default="digits",
                       help="digits (bundled, default), mnist, cifar10 or npz:PATH")
        p.add_argument("--data-dir", type=folder, default=None,
                       help=DATA_DIR_HELP)
    if store:
        p.add_argument("--store", type=folder, default=None,
                       help="run store folder (default ~/.cache/aerobust/runs or $AEROBUST_STORE)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _emit(args: argparse.Namespace, result: dict[str, Any], lines: Sequence[str]) -> None:
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else "\n".join(lines))


def _checkpoint_path(path: Path) -> Path:
    """Accept a checkpoint file or a run directory holding ``model.pt``."""
    return path / "model.pt" if path.is_dir() else path


def _check_fits(path: Path, dataset: Any) -> None:
    from aerobust.models import read_checkpoint

    kw = read_checkpoint(path)["arch_kwargs"]
    want = (kw.get("in_channels"), kw.get("image_size"))
    have = (dataset.channels, dataset.image_size)
    if None not in want and want != have:
        raise UserError(
            f"{path}: model takes {want[0]}x{want[1]}x{want[1]} images, but {dataset.name} "
            f"has {have[0]}x{have[1]}x{have[1]}"
        )


def _models(args: argparse.Namespace, dataset: Any, device: Any) -> tuple[Any, Any]:
    """The classifier (``--classifier``) and what goes in front of it (``--ae`` or, for
    the commands that take it, ``--defense``; None without either), each checked to fit
    ``dataset``: a checkpoint by its recorded image size, the front by keeping the
    input's shape."""
    import torch

    from aerobust.models import load_model

    defense = getattr(args, "defense", None)
    if args.ae is not None and defense is not None:
        raise UserError("give --ae or --defense, not both")
    clf_path = _checkpoint_path(args.classifier)
    _check_fits(clf_path, dataset)
    classifier = load_model(clf_path, kind="classifier", device=device)
    front = None
    if args.ae is not None:
        ae_path = _checkpoint_path(args.ae)
        _check_fits(ae_path, dataset)
        front = load_model(ae_path, kind="autoencoder", device=device)
    elif defense is not None:
        front = _load_defense(defense).to(device)
    if front is not None:
        x = dataset.x_test[:2]
        with torch.no_grad():
            out = front(x.to(device))
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise UserError(f"the defense must keep the input's shape {tuple(x.shape[1:])} "
                            f"in front of the classifier, got {shape}")
    return classifier, front


def _adversarial(args: argparse.Namespace, dataset: Any) -> dict[str, float]:
    """PGD-training settings from --eps/--step-size (0-255 units); {} without --adversarial."""
    from aerobust.training import adversarial_settings

    given = {"--eps": args.eps, "--steps": args.steps, "--step-size": args.step_size,
             "--ramp-epochs": args.ramp_epochs}
    if args.adversarial is None:
        if any(v is not None for v in given.values()):
            raise UserError("--eps, --steps and --step-size need --adversarial pgd")
        return {}
    for flag in ("--eps", "--step-size"):
        value = given[flag]
        if value is not None and not 0 < value <= 255:
            raise UserError(f"{flag} {value} must be in (0, 255] pixel units")
    return adversarial_settings(
        dataset, eps=None if args.eps is None else args.eps / 255, steps=args.steps,
        step_size=None if args.step_size is None else args.step_size / 255,
        ramp_epochs=args.ramp_epochs)


def cmd_train(args: argparse.Namespace) -> None:
    from aerobust.data import load_dataset
    from aerobust.training import RunStore, default_spec
    from aerobust.training.losses import loss_kwargs

    dataset = load_dataset(args.dataset, args.data_dir)
    loss: dict[str, Any] = {}
    if args.what == "classifier":
        kwargs = loss_kwargs(args.loss, temperature=args.temperature, alpha=args.gce_alpha,
                             normalizer=args.gce_normalizer)
        loss = {"loss": args.loss, "loss_kwargs": kwargs}
    extra: dict[str, Any] = {}
    if args.what == "latent":
        extra = {"method": args.method, "lam": args.lam, "gamma": args.gamma}
    elif args.what == "classifier":
        extra = {"adversarial": _adversarial(args, dataset)}
    spec = default_spec(args.arch, dataset, epochs=args.epochs, seed=args.seed, lr=args.lr,
                        batch_size=args.batch_size, **loss, **extra)
    if spec.kind != args.what and args.what != "latent":
        raise UserError(f"--arch {args.arch} is a {spec.kind}, not a {args.what}")
    run = RunStore(args.store).train(spec, dataset, device=args.device, progress=not args.quiet)
    m = run.metrics
    figure = (f"test accuracy: {m['test_accuracy']:.4f}" if spec.kind == "classifier"
              else f"test MSE: {m['test_mse']:.6f}")
    _emit(args, {"run": str(run.path), "checkpoint": str(run.checkpoint), **m},
          [f"run: {run.path}", figure, f"seconds per epoch: {m['seconds_per_epoch']:.2f}"])


def cmd_train_defense(args: argparse.Namespace) -> None:
    from aerobust.data import load_dataset
    from aerobust.training import RunStore, default_spec
    from aerobust.training.defenses import check_settings, defense_spec, train_defense

    settings = dict(_param(p) for p in args.param)
    check_settings(args.kind, settings)  # before the data load: a typo fails at once
    dataset = load_dataset(args.dataset, args.data_dir)
    classifier = None
    if args.kind != "cascade":
        classifier = default_spec(args.classifier_arch, dataset, seed=args.seed,
                                  epochs=args.classifier_epochs)
    spec = defense_spec(args.kind, dataset, classifier,
                        settings=settings, epochs=args.epochs,
                        seed=args.seed, lr=args.lr, batch_size=args.batch_size)
    run = train_defense(spec, dataset, RunStore(args.store), device=args.device,
                        progress=not args.quiet)
    m = run.metrics
    fpr = m.get("test_false_positive_rate")
    _emit(args, {"run": str(run.path), "checkpoint": str(run.checkpoint), **m},
          [f"run: {run.path}", f"test accuracy: {m['test_accuracy']:.4f}"
           + ("" if fpr is None else f"  (clean rejected: {fpr:.4f})"),
           f"seconds per epoch: {m['seconds_per_epoch']:.2f}"])


def cmd_eval(args: argparse.Namespace) -> None:
    from aerobust.data import load_dataset
    from aerobust.device import resolve_device
    from aerobust.metrics import classifier_scores
    from aerobust.models import AEClassifier

    device = resolve_device(args.device)
    dataset = load_dataset(args.dataset, args.data_dir)
    clf, ae = _models(args, dataset, device)
    acc, _ = classifier_scores(clf, dataset.x_test, dataset.y_test)
    result = {"dataset": dataset.name, "n": len(dataset.x_test), "accuracy_C": acc}
    lines = [f"C     clean accuracy: {acc:.4f}  ({len(dataset.x_test)} test images)"]
    if ae is not None:
        acc_ae, _ = classifier_scores(AEClassifier(ae, clf), dataset.x_test, dataset.y_test)
        result["accuracy_AE_C"] = acc_ae
        lines.append(f"AE-C  clean accuracy: {acc_ae:.4f}")
    _emit(args, result, lines)


def cmd_data(args: argparse.Namespace) -> None:
    from aerobust.data import download, load_dataset
    from aerobust.data.mnist import write_test_split_npz

    if args.action == "download":
        paths = download(args.name, args.data_dir, progress=not args.quiet)
        _emit(args, {"files": [str(p) for p in paths]}, [str(p) for p in paths])
    elif args.action == "info":
        info = load_dataset(args.name, args.data_dir).info()
        _emit(args, info, [f"{k}: {v}" for k, v in info.items()])
    else:
        out = write_test_split_npz(args.data_dir, args.out, n_train=args.n_train)
        info = load_dataset(f"npz:{out}").info()
        _emit(args, {"file": str(out), **info},
              [f"wrote {out}: {info['n_train']} train / {info['n_test']} test images",
               f"use it as --dataset npz:{out}"])


def _param(text: str) -> tuple[str, Any]:
    """``name=value`` with value read as JSON where it parses (numbers, true/false)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise UserError(f"--param {text!r}: expected NAME=VALUE")
    try:
        return name.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return name.replace("-", "_"), value


def _eps(value: float | None) -> float | None:
    """``--eps`` in 0-255 pixel units (the paper's, and every command's) as [0,1]."""
    if value is None:
        return None
    if not 0 <= value <= 255:
        raise UserError(f"--eps {value:g} must be in [0, 255] pixel units")
    if 0 < value < 1:
        print(f"aerobust: note: --eps {value:g} is in 0-255 pixel units ({value:g}/255 = "
              f"{value / 255:.4g}); for {value:g} in [0,1] units give --eps "
              f"{value * 255:g}", file=sys.stderr)
    return value / 255


def cmd_attack(args: argparse.Namespace) -> None:
    from aerobust import attacks
    from aerobust.data import load_dataset
    from aerobust.device import resolve_device
    from aerobust.models import AEClassifier

    params = dict(_param(p) for p in args.param)
    eps = _eps(args.eps)
    if args.attack.lower() in ("cw", "deepfool"):
        if eps is not None:
            raise UserError(f"{args.attack} is a minimum-norm attack: --eps does not apply")
    elif eps is None:
        raise UserError(f"{args.attack} needs --eps (0-255 pixel units)")
    else:
        params["eps"] = eps
    if args.steps is not None:
        params["steps"] = args.steps
    attack = attacks.get(args.attack, **params)
    device = resolve_device(args.device)
    dataset = load_dataset(args.dataset, args.data_dir)
    model, ae = _models(args, dataset, device)
    if ae is not None:
        model = AEClassifier(ae, model)
    n = len(dataset.x_test) if args.n is None else args.n
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    ev = attacks.evaluate(model, dataset.x_test[:n], dataset.y_test[:n], attack,
                          batch_size=args.batch_size, progress=not args.quiet)
    result = {"dataset": dataset.name, "model": "AE-C" if args.ae else "C", **ev.to_dict()}
    l2 = "-" if ev.median_l2 is None else f"{ev.median_l2:.4f}"
    _emit(args, result, [
        f"{result['model']} under {attack.name} {ev.params}",
        f"clean accuracy:  {ev.clean_accuracy:.4f}"
        + ("" if ev.false_positive_rate is None
           else f"  (clean rejected: {ev.false_positive_rate:.4f})"),
        f"robust accuracy: {ev.robust_accuracy:.4f}  ({ev.n} test images, judged by "
        f"{ev.judgment})",
        f"median L2 of successful perturbations: {l2}",
        f"{ev.seconds:.1f} s, {ev.images_per_second:.1f} images/s",
    ])


def _load_defense(spec: str) -> Any:
    """``FILE.py:NAME``: the module (or a callable returning one) named NAME in FILE."""
    import importlib.util

    from torch import nn

    path_text, sep, name = spec.rpartition(":")
    path = Path(path_text)
    if not sep or not name or path.suffix != ".py" or not path.is_file():
        raise UserError(f"--defense {spec!r}: expected FILE.py:NAME with an existing file")
    loader = importlib.util.spec_from_file_location(f"aerobust_defense_{path.stem}", path)
    if loader is None or loader.loader is None:
        raise UserError(f"--defense {spec!r}: cannot load {path}")
    module = importlib.util.module_from_spec(loader)
    try:
        loader.loader.exec_module(module)
    except Exception as exc:  # the user's file: say what broke, in one line
        raise UserError(f"--defense {spec!r}: {path} failed to import: {exc}") from None
    obj = getattr(module, name, None)
    if isinstance(obj, type) or (callable(obj) and not isinstance(obj, nn.Module)):
        obj = obj()
    if not isinstance(obj, nn.Module):
        raise UserError(f"--defense {spec!r}: {path} has no nn.Module (or factory) named "
                        f"{name!r}")
    return obj


def cmd_audit(args: argparse.Namespace) -> None:
    from aerobust.audit import audit
    from aerobust.data import load_dataset
    from aerobust.device import resolve_device
    from aerobust.models import AEClassifier

    # Linf in 0-255 pixel units, as the paper; L2 and L1 in the [0,1] scale (AutoAttack's)
    eps = _eps(args.eps) if args.norm == "Linf" else args.eps
    backend = _backend(args)
    if args.backend == "ray":
        from aerobust.backends.ray import require_ray

        require_ray()
    # on Ray the model is built here and audited where the cluster places the task
    device = resolve_device(args.device if args.backend == "local" else "cpu")
    dataset = load_dataset(args.dataset, args.data_dir)
    model, front = _models(args, dataset, device)
    n = len(dataset.x_test) if args.n is None else args.n
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    x, y = dataset.x_test[:n], dataset.y_test[:n]
    if front is not None:
        model = AEClassifier(front, model)
    options = {"budget": args.budget, "seed": args.seed, "batch_size": args.batch_size,
               "norm": args.norm, "fab": True if args.fab else None}
    # the finished rungs, kept for a rerun; on Ray the worker may not see this folder
    state = args.out / "audit-state" if args.out is not None and args.backend == "local" \
        else None
    if args.backend == "ray":
        from aerobust.backends.ray import audit as audit_on_ray

        result = audit_on_ray(model, x, y, eps, address=backend["address"],
                              device=args.device, cpus=backend["task_cpus"], **options)
    else:
        result = audit(model, x, y, eps, progress=not args.quiet, state=state, **options)
    about = {"dataset": dataset.name, "data_checksum": dataset.checksum,
             "classifier": str(args.classifier), "ae": None if args.ae is None else str(args.ae),
             "defense": args.defense}
    if args.out is not None:
        result.save(args.out, title=f"Audit of {args.defense or args.ae or 'C'} on "
                                    f"{dataset.name}", about=about)
    _emit(args, {**about, **result.to_dict()}, [
        f"verdict: {result.verdict}",
        f"robust accuracy: {result.robust_accuracy:.4f} audited, "
        f"{result.baseline_robust_accuracy:.4f} under PGD on CE (clean "
        f"{result.clean_accuracy:.4f}, {n} points, "
        + (f"eps {args.eps:g}/255)" if args.norm == "Linf" else f"{args.norm} eps {args.eps:g})"),
        *(f"- {r}" for r in result.reasons),
        *([f"resumed {len(result.resumed)} finished step(s) from {state}"]
          if result.resumed else []),
        *([f"wrote {args.out}/audit.json, audit.md, audit.html"] if args.out else [])])


def _numbers(flag: str, text: str | None) -> tuple[float, ...] | None:
    try:
        return None if text is None else tuple(float(e) for e in text.split(","))
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected numbers separated by commas") from None


def _experiment_config(args: argparse.Namespace, **fixed: Any) -> Any:
    """The ExperimentConfig the experiment options describe; ``fixed`` (a preset's
    settings) fills what the user left unset."""
    from aerobust.experiments import ExperimentConfig
    from aerobust.experiments.config import option_fields

    given: dict[str, Any] = {}
    for f in option_fields():
        value = getattr(args, f.name)
        if value is not None and str(f.type).startswith("tuple"):
            value = _numbers("--" + f.name.replace("_", "-"), value)
        if value is not None:
            given[f.name] = value
    settings = {**fixed, **given}
    return ExperimentConfig(dataset=args.dataset,
                            data_dir=None if args.data_dir is None else str(args.data_dir),
                            **settings)


def cmd_experiment(args: argparse.Namespace) -> None:
    from aerobust.experiments import Workspace, run_experiment
    from aerobust.report import write_experiment
    from aerobust.training import RunStore

    config = _experiment_config(args)
    ws = Workspace(config, RunStore(args.store), device=args.device, progress=not args.quiet)
    out = args.out or Path("results") / ws.dataset.name.replace(":", "-").replace("/", "_")
    rows = run_experiment(args.name, ws, out)
    paths = {"json": str(out / f"{args.name}.json"),
             **{k: str(v) for k, v in write_experiment(out, args.name).items()}}
    text = Path(paths["md"]).read_text()
    _emit(args, {"outputs": paths, "rows": rows}, [text, *(f"wrote {p}" for p in paths.values())])


def cmd_reproduce(args: argparse.Namespace) -> None:
    from aerobust.experiments.presets import parts
    from aerobust.reproduce import PartPlan, command_line, partial_report, plan, reproduce
    from aerobust.training import RunStore

    experiments = (EXPERIMENT_NAMES if args.only is None
                   else tuple(e.strip() for e in args.only.split(",") if e.strip()))
    unknown = [e for e in experiments if e not in ALL_EXPERIMENTS]
    if unknown or not experiments:
        raise UserError(f"--only {args.only!r}: expected names from "
                        f"{', '.join(ALL_EXPERIMENTS)}, separated by commas")
    plans = []
    for part in parts(args.preset, args.dataset):
        args.dataset = part.dataset
        plans.append(PartPlan(part.name, _experiment_config(args, **part.settings)))
    out = args.out or Path("results") / args.preset
    if args.plan:
        cells = plan(plans, experiments, out)
        counts: dict[tuple[str, str], list[int]] = {}
        for cell in cells:
            count = counts.setdefault((cell["part"], cell["experiment"]), [0, 0])
            count[0] += 1
            count[1] += cell["cached"]
        lines = [f"{p}/{e}: {n} cells, {c} cached" for (p, e), (n, c) in counts.items()]
        lines.append(f"total: {len(cells)} cells, {sum(c['cached'] for c in cells)} cached")
        _emit(args, {"out": str(out), "cells": cells, "count": len(cells)}, lines)
        return
    if args.partial:
        paths = partial_report(plans, experiments, out)
        _emit(args, {"out": str(out), "report": {k: str(v) for k, v in paths.items()}},
              [f"partial report: {paths['md']}", f"                {paths['html']}"])
        return
    paths = reproduce(plans, experiments, out, preset=args.preset, command=command_line(),
                      store=RunStore(args.store), device=args.device, jobs=args.jobs,
                      progress=not args.quiet, **_backend(args))
    manifest = json.loads((out / "reproduce.json").read_text())
    _emit(args, {"out": str(out), "report": {k: str(v) for k, v in paths.items()},
                 "seconds": manifest["seconds"]},
          [f"{len(plans)} part(s), {len(experiments)} experiment(s) in {out} "
           f"({manifest['seconds']:.0f} s)", f"report: {paths['md']}", f"        {paths['html']}"])


def cmd_report(args: argparse.Namespace) -> None:
    from aerobust.report import write_report

    if not args.dir.is_dir():
        raise UserError(f"{args.dir}: no such folder")
    paths = write_report(args.dir)
    _emit(args, {k: str(v) for k, v in paths.items()}, [f"wrote {p}" for p in paths.values()])


def _experiment_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``experiment`` and ``reproduce``, one per field of
    ExperimentConfig, from the field's own help, units, range and the profiles'
    defaults. Unset (None): the preset's value, else the data family's profile."""
    from aerobust.experiments.config import GROUPS, option_fields, profile_default

    groups = {name: p.add_argument_group(title) for name, title in GROUPS.items()}
    for f in option_fields():
        meta = f.metadata
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        several = str(f.type).startswith("tuple")
        kind = str if several or meta["choices"] else int if meta["integer"] else float
        groups[meta["group"]].add_argument(
            flag, dest=f.name, type=kind, default=None,
            choices=None if several else meta["choices"],
            metavar="A,B,..." if several else None,
            help=f"{meta['help']}{' (comma-separated)' if several else ''}; default: "
                 f"{profile_default(f.name)}")


def _backend_options(p: argparse.ArgumentParser, jobs: bool) -> None:
    if jobs:
        p.add_argument("--jobs", type=int, default=1,
                       help="--backend local: experiments run in this many processes at "
                            "once (default 1)")
    p.add_argument("--backend", default="local", choices=("local", "ray"),
                   help="local: this machine (default); ray: tasks on a Ray cluster "
                        "(pip install 'aerobust[ray]')")
    p.add_argument("--address", default=None,
                   help="--backend ray: HOST:PORT of the cluster's head, or auto (default: "
                        "the running cluster, else a local one on 127.0.0.1)")
    p.add_argument("--task-cpus", type=int, default=None,
                   help="--backend ray: CPUs per task (default 1); training and result "
                        "cells compute with one torch thread whatever this is, so that "
                        "their numbers do not depend on it")


def _backend(args: argparse.Namespace) -> dict[str, Any]:
    """The backend options, checked: the Ray ones mean nothing to the local backend."""
    if args.backend == "local":
        given = [f for f, v in (("--address", args.address), ("--task-cpus", args.task_cpus))
                 if v is not None]
        if given:
            verb = "needs" if len(given) == 1 else "need"
            raise UserError(f"{' and '.join(given)} {verb} --backend ray")
    return {"backend": args.backend, "address": args.address or "auto",
            "task_cpus": 1 if args.task_cpus is None else args.task_cpus}


def _per_family(setting: str, scale: float = 1) -> str:
    """A PGD-training default as help text: "76.5 grey, 8 colour" (from the defaults)."""
    from aerobust.training.defaults import ADVERSARIAL_DEFAULTS

    return ", ".join(f"{ADVERSARIAL_DEFAULTS[family][setting] * scale:.4g} {name}"
                     for family, name in (("mnist", "grey"), ("cifar", "colour")))


def build_parser() -> argparse.ArgumentParser:
    from aerobust import __version__
    from aerobust.models import AUTOENCODERS, CLASSIFIERS
    from aerobust.training.defenses import KINDS as DEFENSE_KINDS
    from aerobust.training.losses import loss_kwargs

    parser = _Parser(prog="aerobust", description=__doc__)
    parser.add_argument("--version", action="version", version=f"aerobust {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train a classifier or autoencoder into the run store")
    train_sub = train.add_subparsers(dest="what", required=True, parser_class=_Parser)
    for what, archs, default in (("classifier", CLASSIFIERS, "lenet5"),
                                 ("autoencoder", AUTOENCODERS, "conv-ae"),
                                 ("latent", ("latent-classifier",), "latent-classifier")):
        p = train_sub.add_parser(what, help=f"train a {what}" if what != "latent" else
                                 "train a classifier on the AE encoder's latent features, "
                                 "jointly with reconstruction (the paper's Table 3)")
        p.add_argument("--arch", default=default, choices=archs)
        p.add_argument("--epochs", type=int, default=None, help="default: per data family")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--lr", type=float, default=None)
        p.add_argument("--batch-size", type=int, default=None)
        if what == "classifier":
            p.add_argument("--loss", default="ce", choices=("ce", "temperature", "gce"),
                           help="ce (default); temperature: CE of logits/T in training only "
                                "(C+T); gce: Guided Complement Entropy alone (C+GCE)")
            p.add_argument("--temperature", type=float, default=None,
                           help="T for --loss temperature (default "
                                f"{loss_kwargs('temperature')['temperature']:g})")
            p.add_argument("--gce-alpha", type=float, default=None,
                           help="guiding exponent for --loss gce (default "
                                f"{loss_kwargs('gce')['alpha']:.4g})")
            p.add_argument("--gce-normalizer", default=None, choices=("k-1", "k"),
                           help="GCE divides by log(K-1) (default, the paper) or log K "
                                "(the authors' code)")
        if what == "classifier":
            adv = p.add_argument_group("PGD adversarial training (Madry)")
            adv.add_argument("--adversarial", choices=("pgd",), default=None,
                             help="train on PGD examples against the model being trained")
            adv.add_argument("--eps", type=float, default=None,
                             help=f"0-255 pixel units (default: {_per_family('eps', 255)})")
            adv.add_argument("--steps", type=int, default=None,
                             help=f"PGD steps (default: {_per_family('steps')})")
            adv.add_argument("--step-size", type=float, default=None,
                             help="0-255 pixel units (default: "
                                  f"{_per_family('step_size', 255)})")
            adv.add_argument("--ramp-epochs", type=float, default=None,
                             help="eps and step size grow linearly to full over this many "
                                  f"epochs (default: {_per_family('ramp_epochs')})")
        if what == "latent":
            p.add_argument("--method", default="regularization",
                           choices=("regularization", "alternating"),
                           help="regularization: L = Lce + lambda*Lrec; alternating: one CE "
                                "step, then gamma reconstruction steps per batch")
            p.add_argument("--lam", type=float, default=0.0, help="lambda (regularization)")
            p.add_argument("--gamma", type=int, default=0, help="gamma (alternating)")
        _common(p, store=True)
        p.set_defaults(func=cmd_train)

    dfn = train_sub.add_parser(
        "defense", help="train one of the autoencoder defenses the paper cites, with the "
                        "classifier it guards, into one checkpoint (images to logits)")
    dfn.add_argument("--kind", required=True, choices=DEFENSE_KINDS,
                     help="dae, magnet (detects), puvae (detects), hgd, or cascade")
    dfn.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="a setting of the kind, e.g. noise=0.3 (dae), guide=logits (hgd), "
                          "fpr=0.01 (magnet); repeatable")
    dfn.add_argument("--classifier-arch", default="lenet5", choices=CLASSIFIERS,
                     help="the classifier C the defense guards, trained first (not cascade)")
    dfn.add_argument("--classifier-epochs", type=int, default=None,
                     help="C's epochs (default: per data family)")
    dfn.add_argument("--epochs", type=int, default=None,
                     help="epochs per training phase (default: per kind and data family)")
    dfn.add_argument("--seed", type=int, default=0)
    dfn.add_argument("--lr", type=float, default=None)
    dfn.add_argument("--batch-size", type=int, default=None)
    _common(dfn, store=True)
    dfn.set_defaults(func=cmd_train_defense)

    ev = sub.add_parser("eval", help="clean accuracy of C, and of AE-C when --ae is given")
    ev.add_argument("--classifier", type=Path, required=True, help="checkpoint or run folder")
    ev.add_argument("--ae", type=Path, default=None, help="autoencoder checkpoint or run folder")
    _common(ev)
    ev.set_defaults(func=cmd_eval)

    att = sub.add_parser("attack", help="attack C (or AE-C with --ae) on the test set")
    att.add_argument("--classifier", type=Path, required=True, help="checkpoint or run folder")
    att.add_argument("--ae", type=Path, default=None, help="autoencoder checkpoint or run folder")
    att.add_argument("--attack", required=True, help="fgsm, pgd, cw or deepfool")
    att.add_argument("--eps", type=float, default=None,
                     help="perturbation budget in 0-255 pixel units, as in the paper (fgsm, pgd)")
    att.add_argument("--steps", type=int, default=None, help="iterations (pgd, cw, deepfool)")
    att.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="any other attack parameter, e.g. restarts=5 (repeatable)")
    att.add_argument("--n", type=int, default=None, help="first N test images (default: all)")
    att.add_argument("--batch-size", type=int, default=256)
    _common(att)
    att.set_defaults(func=cmd_attack)

    aud = sub.add_parser("audit", help="is C (with --ae or --defense in front) robust, or does "
                                       "it only mask gradients? probes, attack ladder, verdict")
    aud.add_argument("--classifier", type=Path, required=True, help="checkpoint or run folder")
    aud.add_argument("--ae", type=Path, default=None, help="autoencoder checkpoint or run folder")
    aud.add_argument("--defense", default=None, metavar="FILE.py:NAME",
                     help="your preprocessing: an nn.Module (or a factory) in a Python file")
    aud.add_argument("--eps", type=float, required=True,
                     help="the radius in --norm. Linf: 0-255 pixel units, as in the paper "
                          "(76.5 = 0.3); L2 and L1: the [0,1] pixel scale that AutoAttack and "
                          "RobustBench use (MNIST: L2 2.0, L1 10)")
    aud.add_argument("--norm", default="Linf", choices=("Linf", "L2", "L1"),
                     help="threat model (default: Linf)")
    aud.add_argument("--fab", action="store_true",
                     help="add FAB-T (minimum-norm, targeted) as a rung (thorough runs it "
                          "anyway)")
    aud.add_argument("--n", type=int, default=None, help="first N test images (default: all)")
    aud.add_argument("--budget", default="standard", choices=("quick", "standard", "thorough"))
    aud.add_argument("--seed", type=int, default=0)
    aud.add_argument("--batch-size", type=int, default=256)
    aud.add_argument("--out", type=folder, default=None,
                     help="write audit.json, audit.md and audit.html here, and every finished "
                          "rung to OUT/audit-state as it ends: the same command after a crash "
                          "or a kill computes only what had not finished (local backend)")
    _backend_options(aud, jobs=False)
    _common(aud)
    aud.set_defaults(func=cmd_audit)

    exp = sub.add_parser("experiment", help="run one of the paper's tables or figures")
    exp.add_argument("name", choices=ALL_EXPERIMENTS)
    exp.add_argument("--out", type=folder, default=None,
                     help="output folder (default results/<dataset>)")
    _experiment_options(exp)
    _common(exp, store=True)
    exp.set_defaults(func=cmd_experiment)

    rep = sub.add_parser(
        "reproduce", help="every table and figure of the paper for a preset, then the report")
    rep.add_argument("--preset", default="quick", choices=("quick", "mnist", "cifar10", "paper"),
                     help="quick: bundled digits, minutes on a CPU (default); mnist, cifar10: "
                          "the paper's models and sizes (data on disk); paper: both")
    rep.add_argument("--only", default=None,
                     help=f"comma-separated subset of {','.join(EXPERIMENT_NAMES)} (the "
                          f"default: all of them), or {','.join(OPTIONAL_EXPERIMENTS)}: "
                          "which unstated choice moves each gap to the paper")
    rep.add_argument("--dataset", default=None,
                     help="replace the preset's data, keeping its settings (e.g. npz:PATH)")
    rep.add_argument("--data-dir", type=folder, default=None,
                     help=DATA_DIR_HELP)
    rep.add_argument("--out", type=folder, default=None,
                     help="output folder (default results/<preset>)")
    _backend_options(rep, jobs=True)
    rep.add_argument("--plan", action="store_true",
                     help="list the cells the run would compute or reuse (with --json: "
                          "each with its key and resolved spec) and stop")
    rep.add_argument("--partial", action="store_true",
                     help="write the report from the cells finished so far and stop, "
                          "computing nothing (safe beside the running run; give the same "
                          "options it was started with)")
    _experiment_options(rep)
    _common(rep, data=False, store=True)
    rep.set_defaults(func=cmd_reproduce)

    report = sub.add_parser("report", help="report.md and report.html from a reproduce folder "
                                           "(reads results only)")
    report.add_argument("dir", type=folder, help="the --out folder of `aerobust reproduce`")
    report.add_argument("--json", action="store_true", help="print the result as JSON")
    report.set_defaults(func=cmd_report)

    data = sub.add_parser("data", help="download, describe or split a dataset")
    data_sub = data.add_subparsers(dest="action", required=True, parser_class=_Parser)
    dl = data_sub.add_parser("download", help="fetch the official files, md5-checked")
    dl.add_argument("name", help="mnist or cifar10")
    dl.add_argument("--data-dir", type=folder, required=True)
    info = data_sub.add_parser("info", help="sizes, class counts and checksum")
    info.add_argument("name", help="digits, mnist, cifar10 or npz:PATH")
    info.add_argument("--data-dir", type=folder, default=None)
    split = data_sub.add_parser(
        "mnist-test-split",
        help="write the official MNIST test set as an npz: first N to train, rest to test "
             "(a real-data check where the 60k training images are absent)")
    split.add_argument("--data-dir", type=folder, required=True,
                       help="folder with t10k-images-idx3-ubyte(.gz) and t10k-labels")
    split.add_argument("--out", type=file_to_write, required=True, help="npz file to write")
    split.add_argument("--n-train", type=int, default=8000)
    for p in (dl, info, split):
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.set_defaults(func=cmd_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from aerobust.allocator import retain_freed_memory

    retain_freed_memory()  # this process is ours: keep freed tensors' pages for reuse
    try:
        args = build_parser().parse_args(argv)
        func: Callable[[argparse.Namespace], None] = args.func
        func(args)
    except UserError as exc:
        print(f"aerobust: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:  # a file or folder the user named could not be read or made
        line = os_error_line(exc)
        if line is None:
            raise
        print(f"aerobust: error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("aerobust: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
