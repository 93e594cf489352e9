"""The ``aerobust`` command. User errors print one line to stderr and exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aerobust.errors import UserError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in the same one-line form as every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def _common(p: argparse.ArgumentParser, data: bool = True, store: bool = False) -> None:
    if data:
        p.add_argument("--dataset", default="digits",
                       help="digits (bundled, default), mnist, cifar10 or npz:PATH")
        p.add_argument("--data-dir", type=Path, default=None,
                       help="folder holding the dataset files (default ~/.cache/aerobust/data "
                            "or $AEROBUST_DATA)")
    if store:
        p.add_argument("--store", type=Path, default=None,
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


def cmd_train(args: argparse.Namespace) -> None:
    from aerobust.data import load_dataset
    from aerobust.training import RunStore, default_spec

    dataset = load_dataset(args.dataset, args.data_dir)
    spec = default_spec(args.arch, dataset, epochs=args.epochs, seed=args.seed, lr=args.lr,
                        batch_size=args.batch_size)
    if spec.kind != args.what:
        raise UserError(f"--arch {args.arch} is a {spec.kind}, not a {args.what}")
    run = RunStore(args.store).train(spec, dataset, device=args.device, progress=not args.quiet)
    m = run.metrics
    figure = (f"test accuracy: {m['test_accuracy']:.4f}" if spec.kind == "classifier"
              else f"test MSE: {m['test_mse']:.6f}")
    _emit(args, {"run": str(run.path), "checkpoint": str(run.checkpoint), **m},
          [f"run: {run.path}", figure, f"seconds per epoch: {m['seconds_per_epoch']:.2f}"])


def cmd_eval(args: argparse.Namespace) -> None:
    from aerobust.data import load_dataset
    from aerobust.device import resolve_device
    from aerobust.metrics import classifier_scores
    from aerobust.models import AEClassifier, load_model

    device = resolve_device(args.device)
    dataset = load_dataset(args.dataset, args.data_dir)
    clf_path = _checkpoint_path(args.classifier)
    _check_fits(clf_path, dataset)
    clf = load_model(clf_path, kind="classifier", device=device)
    acc, _ = classifier_scores(clf, dataset.x_test, dataset.y_test)
    result = {"dataset": dataset.name, "n": len(dataset.x_test), "accuracy_C": acc}
    lines = [f"C     clean accuracy: {acc:.4f}  ({len(dataset.x_test)} test images)"]
    if args.ae is not None:
        ae_path = _checkpoint_path(args.ae)
        _check_fits(ae_path, dataset)
        ae = load_model(ae_path, kind="autoencoder", device=device)
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


def build_parser() -> argparse.ArgumentParser:
    from aerobust import __version__
    from aerobust.models import AUTOENCODERS, CLASSIFIERS

    parser = _Parser(prog="aerobust", description=__doc__)
    parser.add_argument("--version", action="version", version=f"aerobust {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train a classifier or autoencoder into the run store")
    train_sub = train.add_subparsers(dest="what", required=True, parser_class=_Parser)
    for what, archs, default in (("classifier", CLASSIFIERS, "lenet5"),
                                 ("autoencoder", AUTOENCODERS, "conv-ae")):
        p = train_sub.add_parser(what, help=f"train a {what}")
        p.add_argument("--arch", default=default, choices=archs)
        p.add_argument("--epochs", type=int, default=None, help="default: per data family")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--lr", type=float, default=None)
        p.add_argument("--batch-size", type=int, default=None)
        _common(p, store=True)
        p.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="clean accuracy of C, and of AE-C when --ae is given")
    ev.add_argument("--classifier", type=Path, required=True, help="checkpoint or run folder")
    ev.add_argument("--ae", type=Path, default=None, help="autoencoder checkpoint or run folder")
    _common(ev)
    ev.set_defaults(func=cmd_eval)

    data = sub.add_parser("data", help="download, describe or split a dataset")
    data_sub = data.add_subparsers(dest="action", required=True, parser_class=_Parser)
    dl = data_sub.add_parser("download", help="fetch the official files, md5-checked")
    dl.add_argument("name", help="mnist or cifar10")
    dl.add_argument("--data-dir", type=Path, required=True)
    info = data_sub.add_parser("info", help="sizes, class counts and checksum")
    info.add_argument("name", help="digits, mnist, cifar10 or npz:PATH")
    info.add_argument("--data-dir", type=Path, default=None)
    split = data_sub.add_parser(
        "mnist-test-split",
        help="write the official MNIST test set as an npz: first N to train, rest to test "
             "(a real-data check where the 60k training images are absent)")
    split.add_argument("--data-dir", type=Path, required=True,
                       help="folder with t10k-images-idx3-ubyte(.gz) and t10k-labels")
    split.add_argument("--out", type=Path, required=True, help="npz file to write")
    split.add_argument("--n-train", type=int, default=8000)
    for p in (dl, info, split):
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.set_defaults(func=cmd_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        func: Callable[[argparse.Namespace], None] = args.func
        func(args)
    except UserError as exc:
        print(f"aerobust: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("aerobust: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
