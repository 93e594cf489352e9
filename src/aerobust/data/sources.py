"""Where each dataset lives: official file names, md5 sums, mirrors and local folders."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from aerobust.errors import DataError

DATA_ENV = "AEROBUST_DATA"


@dataclass(frozen=True)
class RemoteFile:
    """One official file: its name, its official md5 and the URLs to try, in order."""

    name: str
    md5: str
    urls: tuple[str, ...]


MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# The same files uncompressed: the md5 of each official archive's content, so the raw IDX
# files (as some mirrors and the shared data folder hold them) are checked as strictly.
MNIST_RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"

REMOTE: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": tuple(
        RemoteFile(name, md5, tuple(m + name for m in MNIST_MIRRORS))
        for name, md5 in MNIST_MD5.items()
    ),
    "cifar10": (
        RemoteFile(
            CIFAR10_ARCHIVE, CIFAR10_MD5, ("https://www.cs.toronto.edu/~kriz/" + CIFAR10_ARCHIVE,)
        ),
    ),
}
OFFICIAL_MD5 = {**{f.name: f.md5 for files in REMOTE.values() for f in files}, **MNIST_RAW_MD5}
# Set to 1 to load files that are not the official ones (your own IDX data): the dataset's
# content checksum still names it in every result.
SKIP_MD5_ENV = "AEROBUST_SKIP_MD5"
DATA_DIR_HELP = ("folder holding the dataset files (default ~/.cache/aerobust/data or "
                 f"$AEROBUST_DATA); official files are md5-checked, {SKIP_MD5_ENV}=1 loads "
                 "your own IDX files")


def md5_check_wanted(verify_md5: bool) -> bool:
    """The caller's choice, unless the user opted out for files that are not official."""
    return verify_md5 and os.environ.get(SKIP_MD5_ENV, "") not in ("1", "true", "yes")


def default_data_dir() -> Path:
    """``$AEROBUST_DATA`` if set, else ``~/.cache/aerobust/data``: one cache shared by all runs."""
    return Path(os.environ.get(DATA_ENV) or "~/.cache/aerobust/data").expanduser()


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    return default_data_dir() if data_dir is None else Path(data_dir).expanduser()


def candidate_dirs(data_dir: Path, name: str) -> tuple[Path, Path]:
    """Files may sit directly in ``data_dir`` or in its per-dataset subfolder."""
    return data_dir, data_dir / name


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_official_md5(path: Path, dataset: str, data_dir: Path) -> None:
    """An official file, archive or uncompressed, must match its published md5: a partial
    download or a flipped byte must not load."""
    expected = OFFICIAL_MD5[path.name]
    try:
        actual = md5_file(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    if actual != expected:
        raise DataError(
            f"{path}: md5 {actual} does not match the official md5 {expected} (corrupt or "
            f"incomplete download); delete it and run `aerobust data download {dataset} "
            f"--data-dir {data_dir}`"
        )
