"""Builders for tiny, well-formed dataset files (and their corrupt variants), plus a guard
that makes any network access in these tests fail loudly."""

from __future__ import annotations

import gzip
import io
import pickle
import socket
import struct
import tarfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("network access attempted in a data test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    magic = (0x800 | arr.ndim) if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_file(path: Path, data: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def fake_mnist_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 10


def write_mnist(folder: Path, gz: bool = False, n_train: int = 12, n_test: int = 7) -> Path:
    """A valid MNIST folder with few samples; returns the folder."""
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        x, y = fake_mnist_arrays(n, seed)
        write_file(folder / f"{prefix}-images-idx3-ubyte", idx_bytes(x), gz)
        write_file(folder / f"{prefix}-labels-idx1-ubyte", idx_bytes(y), gz)
    return folder


def _s(b: bytes) -> bytes:
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)


def _i(v: int) -> bytes:
    return b"J" + struct.pack("<i", v)


def py2_batch_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """Opcode for opcode what Python 2's cPickle wrote for the official CIFAR-10 batches:
    str (not bytes) strings and numpy.core.multiarray._reconstruct."""
    out = b"\x80\x02}(" + _s(b"batch_label") + _s(b"tiny batch") + _s(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _i(0) + b"\x85"
    out += _s(b"b") + b"\x87R(" + _i(1) + _i(data.shape[0]) + _i(data.shape[1]) + b"\x86"
    out += b"cnumpy\ndtype\n" + _s(b"u1") + _i(0) + _i(1) + b"\x87R"
    out += b"(" + _i(3) + _s(b"|") + b"NNN" + _i(-1) + _i(-1) + _i(0) + b"tb"
    out += b"\x89" + _s(data.tobytes()) + b"tb"
    out += _s(b"labels") + b"](" + b"".join(_i(v) for v in labels) + b"eu."
    return out


def fake_batch(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, n)]


def write_cifar_dir(folder: Path, n: int = 3, py2: bool = True) -> Path:
    """A cifar-10-batches-py folder with n samples per batch (5n train, n test)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for seed, name in enumerate(names):
        data, labels = fake_batch(n, seed)
        blob = (
            py2_batch_pickle(data, labels)
            if py2
            else pickle.dumps({b"data": data, b"labels": labels}, protocol=4)
        )
        (folder / name).write_bytes(blob)
    return folder


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def tar_of_dir(path: Path, folder: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return path


@pytest.fixture
def build() -> SimpleNamespace:
    """The builders above, for test modules (conftest cannot be imported by name safely)."""
    fns: dict[str, Callable[..., object]] = {
        f.__name__: f
        for f in (
            idx_bytes,
            write_file,
            fake_mnist_arrays,
            write_mnist,
            py2_batch_pickle,
            fake_batch,
            write_cifar_dir,
            write_tar,
            tar_of_dir,
        )
    }
    return SimpleNamespace(**fns)
