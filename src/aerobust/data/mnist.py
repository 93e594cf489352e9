"""MNIST from the four official IDX files, raw or .gz, parsed and validated strictly."""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from aerobust.atomic import write_bytes
from aerobust.data.dataset import Dataset, from_arrays
from aerobust.data.sources import (
    candidate_dirs,
    md5_check_wanted,
    resolve_data_dir,
    verify_official_md5,
)
from aerobust.errors import DataError
from aerobust.paths import file_to_read

IMAGE_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABEL_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MAX_IDX_BYTES = 1 << 31  # far above MNIST's 47 MB: a corrupt header must not allocate wildly


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one IDX file: magic number, dims from the header, exactly that many bytes."""
    kind = "image" if magic == IMAGE_MAGIC else "label"
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4:
                raise DataError(f"{path}: truncated: too short for an IDX header")
            (got,) = struct.unpack(">I", head)
            if got != magic:
                raise DataError(
                    f"{path}: wrong magic number 0x{got:08x}, expected 0x{magic:08x} "
                    f"for an IDX {kind} file"
                )
            ndim = magic & 0xFF
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise DataError(f"{path}: truncated inside the IDX header")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            size = math.prod(dims)
            if size > MAX_IDX_BYTES:
                raise DataError(f"{path}: header claims dims {dims}, implausibly large")
            body = f.read(size)
            if len(body) < size:
                raise DataError(
                    f"{path}: truncated: header says dims {dims} ({size} data bytes) "
                    f"but only {len(body)} follow"
                )
            if f.read(1):
                raise DataError(
                    f"{path}: trailing bytes after the {size} data bytes the header declares"
                )
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read as IDX: {e}") from e
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def locate(data_dir: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """Find each file raw or .gz in data_dir or data_dir/mnist; one error lists all missing."""
    found: dict[str, Path] = {}
    for name in names:
        for folder in candidate_dirs(data_dir, "mnist"):
            hit = next((file_to_read(p, "an IDX file") for p in (folder / f"{name}.gz",
                                                                  folder / name)
                        if p.exists()), None)
            if hit is not None:
                found[name] = hit
                break
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(
            f"MNIST files missing: {', '.join(missing)} (raw or .gz) not found in {data_dir} "
            f"or {data_dir / 'mnist'}; place the official files in {data_dir / 'mnist'}, "
            f"or run `aerobust data download mnist --data-dir {data_dir}`"
        )
    return found


def _read_pair(
    images: Path, labels: Path, data_dir: Path, verify_md5: bool
) -> tuple[np.ndarray, np.ndarray]:
    if md5_check_wanted(verify_md5):
        for p in (images, labels):
            verify_official_md5(p, "mnist", data_dir)
    x = read_idx(images, IMAGE_MAGIC)
    y = read_idx(labels, LABEL_MAGIC)
    if x.shape[1:] != (28, 28):
        raise DataError(f"{images}: images are {x.shape[1]}x{x.shape[2]}, MNIST's are 28x28")
    if len(x) != len(y):
        raise DataError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels")
    if len(y) == 0:
        raise DataError(f"{labels}: holds no samples")
    bad = np.flatnonzero(y > 9)
    if bad.size:
        raise DataError(f"{labels}: label {y[bad[0]]} at index {bad[0]} is outside 0..9")
    return x.reshape(-1, 1, 28, 28), y.astype(np.int64)


def read_split(
    data_dir: str | Path, split: str, *, verify_md5: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """One split ("train" or "t10k") as (N,1,28,28) uint8 images and (N,) int64 labels."""
    d = Path(data_dir).expanduser()
    names = SPLITS[split]
    found = locate(d, names)
    return _read_pair(found[names[0]], found[names[1]], d, verify_md5)


def load_mnist(data_dir: str | Path | None = None, *, verify_md5: bool = True) -> Dataset:
    """The official 60,000/10,000 split. Every file, ``.gz`` or raw, must match its official
    md5 unless ``verify_md5`` is off or ``$AEROBUST_SKIP_MD5=1`` (your own IDX files)."""
    d = resolve_data_dir(data_dir)
    found = locate(d, SPLITS["train"] + SPLITS["t10k"])
    x_tr, y_tr = _read_pair(*(found[n] for n in SPLITS["train"]), d, verify_md5)
    x_te, y_te = _read_pair(*(found[n] for n in SPLITS["t10k"]), d, verify_md5)
    return from_arrays("mnist", x_tr, y_tr, x_te, y_te, 10)


def write_test_split_npz(mnist_dir: str | Path, out_path: str | Path, n_train: int = 8000) -> Path:
    """Split the official test set into train (first n_train) and test (the rest) as npz.

    Machines that hold only the test files still get a real-data train/evaluate check.
    """
    x, y = read_split(mnist_dir, "t10k")
    if not 0 < n_train < len(y):
        raise DataError(f"n_train must be in 1..{len(y) - 1} for {len(y)} images, got {n_train}")
    buf = io.BytesIO()
    np.savez(buf, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:], y_test=y[n_train:])
    out = Path(out_path).expanduser()
    write_bytes(out, buf.getvalue())
    return out


