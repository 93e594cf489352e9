"""CIFAR-10 from the official python batches: safe tar extraction, code-free unpickling."""

from __future__ import annotations

import io
import pickle
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from aerobust.data.dataset import Dataset, from_arrays
from aerobust.data.sources import (
    CIFAR10_ARCHIVE,
    CIFAR10_MD5,
    candidate_dirs,
    md5_check_wanted,
    resolve_data_dir,
    verify_official_md5,
)
from aerobust.errors import DataError
from aerobust.paths import file_to_read

BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
OFFICIAL_COUNTS = (50_000, 10_000)

# Only what a pickled uint8/int ndarray needs. ``_reconstruct`` is taken from ndarray's own
# reduce so it resolves under numpy 1 (numpy.core) and 2 (numpy._core) without private imports.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _BatchUnpickler(pickle.Unpickler):
    """Refuses every global outside the allow-list, so loading a batch never runs its code."""

    def __init__(self, data: bytes, path: Path) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise DataError(
                f"{self._path}: refused to unpickle {module}.{name}: a CIFAR-10 batch may hold "
                "only numpy arrays, lists and dicts"
            )
        return obj


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (N,3,32,32) uint8 images and (N,) int64 labels in 0..9."""
    try:
        obj = _BatchUnpickler(path.read_bytes(), path).load()
    except DataError:
        raise
    except Exception as e:  # a malformed pickle can raise almost anything; all mean "corrupt"
        raise DataError(f"{path}: not a readable CIFAR-10 batch pickle: {e!r}") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict, found {type(obj).__name__}")
    entries = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if "data" not in entries or "labels" not in entries:
        raise DataError(f"{path}: missing 'data' or 'labels' entry")
    data = entries["data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        raise DataError(f"{path}: 'data' must be a uint8 (N,3072) array")
    if data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' has shape {data.shape}, expected (N,3072)")
    try:
        labels = np.asarray(entries["labels"])
    except Exception as e:
        raise DataError(f"{path}: 'labels' is not a list of integers: {e!r}") from e
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise DataError(f"{path}: 'labels' must be a flat list of integers")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if bad.size:
        raise DataError(f"{path}: label {labels[bad[0]]} at index {bad[0]} is outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _check_member(archive: Path, m: tarfile.TarInfo) -> None:
    name = m.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"{archive}: refused member {name!r}: absolute path")
    if ".." in parts:
        raise DataError(f"{archive}: refused member {name!r}: '..' escapes the folder")
    if m.issym() or m.islnk():
        raise DataError(f"{archive}: refused member {name!r}: links are not allowed")
    if m.isdev():
        raise DataError(f"{archive}: refused member {name!r}: device or fifo")
    if not (m.isreg() or m.isdir()):
        raise DataError(f"{archive}: refused member {name!r}: unsupported member type")


def safe_extract(archive: Path, dest: Path) -> Path:
    """Check every member first, then write regular files only; returns dest/BATCHES_DIR.

    Explicit checks rather than trusting tarfile's filters: nothing is written unless the
    whole archive is clean, and extraction goes through a temp folder renamed at the end.
    """
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(archive, m)
            tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".cifar10-extract-"))
            try:
                root = tmp.resolve()
                for m in members:
                    if not m.isreg():
                        continue
                    target = tmp / m.name
                    if not target.resolve().is_relative_to(root):
                        raise DataError(f"{archive}: refused member {m.name!r}: escapes the folder")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(m)
                    if src is None:
                        raise DataError(f"{archive}: member {m.name!r} has no content")
                    with src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
                if not (tmp / BATCHES_DIR).is_dir():
                    raise DataError(f"{archive}: holds no {BATCHES_DIR}/ folder")
                final = dest / BATCHES_DIR
                (tmp / BATCHES_DIR).replace(final)
                return final
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{archive}: cannot extract into {dest}: {e}") from e


def _find_batches(data_dir: Path, verify_md5: bool) -> Path:
    folders = candidate_dirs(data_dir, "cifar10")
    for folder in folders:
        if (folder / TEST_BATCH).is_file():
            return folder
        if (folder / BATCHES_DIR).is_dir():
            return folder / BATCHES_DIR
    for folder in folders:
        archive = folder / CIFAR10_ARCHIVE
        if archive.exists():
            file_to_read(archive, "a CIFAR-10 archive")
            if md5_check_wanted(verify_md5):
                verify_official_md5(archive, "cifar10", data_dir)
            return safe_extract(archive, folder)
    raise DataError(
        f"CIFAR-10 not found: no {BATCHES_DIR}/ folder or {CIFAR10_ARCHIVE} (md5 {CIFAR10_MD5}) "
        f"in {data_dir} or {data_dir / 'cifar10'}; place one in {data_dir / 'cifar10'}, "
        f"or run `aerobust data download cifar10 --data-dir {data_dir}`"
    )


def load_cifar10(
    data_dir: str | Path | None = None,
    *,
    expected: tuple[int, int] = OFFICIAL_COUNTS,
    verify_md5: bool = True,
) -> Dataset:
    """The official 50,000/10,000 split; other counts are an error (tests pass small ones)."""
    d = resolve_data_dir(data_dir)
    folder = _find_batches(d, verify_md5)
    missing = [b for b in (*TRAIN_BATCHES, TEST_BATCH) if not (folder / b).is_file()]
    if missing:
        raise DataError(f"{folder}: missing batch files: {', '.join(missing)}")
    train = [read_batch(folder / b) for b in TRAIN_BATCHES]
    x_tr = np.concatenate([x for x, _ in train])
    y_tr = np.concatenate([y for _, y in train])
    x_te, y_te = read_batch(folder / TEST_BATCH)
    for split, n, want in (("training", len(y_tr), expected[0]), ("test", len(y_te), expected[1])):
        if n != want:
            raise DataError(f"{folder}: {n} {split} images, expected {want}")
    return from_arrays("cifar10", x_tr, y_tr, x_te, y_te, 10)
