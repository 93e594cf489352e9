"""Dataset names to loaders: the one entry point the rest of aerobust uses."""

from __future__ import annotations

from pathlib import Path

from aerobust.data.cifar10 import load_cifar10
from aerobust.data.dataset import Dataset
from aerobust.data.digits import load_digits
from aerobust.data.mnist import load_mnist
from aerobust.data.npz import load_npz
from aerobust.errors import UserError

DATASETS: tuple[str, ...] = ("digits", "mnist", "cifar10")
NPZ_PREFIX = "npz:"


def unknown_name(name: str) -> UserError:
    return UserError(
        f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}, "
        f"or {NPZ_PREFIX}PATH for your own .npz file"
    )


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Load a whole dataset into memory by name: the one entry point for data.

    Args:
        name: ``"digits"`` (bundled, needs no files), ``"mnist"``, ``"cifar10"``, or
            ``"npz:PATH"`` for your own file with ``x_train, y_train, x_test, y_test``
            (uint8 0-255 or float 0-1, NHWC or NCHW).
        data_dir: where ``mnist`` and ``cifar10`` are read from (default
            ``$AEROBUST_DATA`` or ``~/.cache/aerobust/data``); ignored otherwise.

    Returns:
        A ``Dataset``: ``x_train``, ``x_test`` (N, C, H, W) float32 in [0,1], ``y_train``,
        ``y_test`` (N,) int64, ``num_classes`` and a content ``checksum``. Missing or
        corrupt files raise a ``UserError`` that says what to place where.

    Example:
        >>> dataset = aerobust.load_dataset("digits")
        >>> tuple(dataset.x_test.shape[1:]), dataset.num_classes
        ((1, 28, 28), 10)
    """
    if name.startswith(NPZ_PREFIX):
        path = name[len(NPZ_PREFIX) :]
        if not path:
            raise UserError(f"{NPZ_PREFIX}PATH needs a path, e.g. {NPZ_PREFIX}/data/mine.npz")
        return load_npz(path)
    if name == "digits":
        return load_digits()
    if name == "mnist":
        return load_mnist(data_dir)
    if name == "cifar10":
        return load_cifar10(data_dir)
    raise unknown_name(name)
