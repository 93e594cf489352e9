"""The in-memory dataset every other module consumes, and its content checksum."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class Dataset:
    """A whole dataset in memory: x (N,C,H,W) float32 in [0,1], y (N,) int64.

    ``eq=False``: tensors have no single truth value, so datasets compare by identity;
    compare ``checksum`` to know whether two hold the same data.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    checksum: str

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 4 or x.dtype != torch.float32:
                raise ValueError(f"x_{split} must be (N,C,H,W) float32: {x.dtype} {tuple(x.shape)}")
            if y.ndim != 1 or y.dtype != torch.int64 or len(y) != len(x):
                raise ValueError(f"y_{split} must be ({len(x)},) int64: {y.dtype} {tuple(y.shape)}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"train and test image shapes differ: {tuple(self.x_train.shape[1:])} "
                f"vs {tuple(self.x_test.shape[1:])}"
            )

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[2])

    def info(self) -> dict[str, Any]:
        """A JSON-able summary, for logs and result rows."""
        return {
            "name": self.name,
            "n_train": len(self.y_train),
            "n_test": len(self.y_test),
            "shape": [int(s) for s in self.x_train.shape[1:]],
            "num_classes": self.num_classes,
            "class_counts": {
                "train": torch.bincount(self.y_train, minlength=self.num_classes).tolist(),
                "test": torch.bincount(self.y_test, minlength=self.num_classes).tolist(),
            },
            "checksum": self.checksum,
        }


def content_checksum(parts: Sequence[tuple[str, np.ndarray]]) -> str:
    """sha256 over named arrays (dtype, shape and little-endian bytes), not over files.

    Hashing content rather than files makes gz and raw copies of the same data agree.
    """
    h = hashlib.sha256()
    for key, arr in parts:
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        h.update(f"{key}:{arr.dtype.str}:{arr.shape}\n".encode())
        h.update(memoryview(arr).cast("B"))
    return "sha256:" + h.hexdigest()


def to_images(x: np.ndarray) -> torch.Tensor:
    """uint8 0..255 -> float32 0..1; float input is taken as already in [0,1]."""
    out = x.astype(np.float32, order="C")  # always a fresh, writable copy for torch
    if x.dtype == np.uint8:
        out /= 255.0
    return torch.from_numpy(out)


def from_arrays(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int,
    checksum: str | None = None,
) -> Dataset:
    """Build a Dataset from validated NCHW arrays; the checksum defaults to their content."""
    y_train = y_train.astype(np.int64)
    y_test = y_test.astype(np.int64)
    if checksum is None:
        checksum = content_checksum(
            [("x_train", x_train), ("y_train", y_train), ("x_test", x_test), ("y_test", y_test)]
        )
    return Dataset(
        name=name,
        x_train=to_images(x_train),
        y_train=torch.from_numpy(y_train),
        x_test=to_images(x_test),
        y_test=torch.from_numpy(y_test),
        num_classes=num_classes,
        checksum=checksum,
    )
