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
    """Load by name: "digits" (bundled, ignores data_dir), "mnist", "cifar10" (read from
    data_dir, default $AEROBUST_DATA or ~/.cache/aerobust/data), or "npz:PATH"."""
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
