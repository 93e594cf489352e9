"""A user's own data as .npz (x_train, y_train, x_test, y_test), validated before use."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from aerobust.data.dataset import Dataset, from_arrays
from aerobust.errors import DataError

KEYS = ("x_train", "y_train", "x_test", "y_test")
CHANNELS = (1, 3)


def _layout(path: Path, x: np.ndarray) -> str:
    """NCHW or NHWC. When both axes could be channels, prefer the one leaving square images,
    then NCHW (the layout used everywhere else here)."""
    first, last = x.shape[1] in CHANNELS, x.shape[3] in CHANNELS
    if first and last:
        if x.shape[2] != x.shape[3] and x.shape[1] == x.shape[2]:
            return "NHWC"
        return "NCHW"
    if first:
        return "NCHW"
    if last:
        return "NHWC"
    raise DataError(
        f"{path}: x_train has shape {x.shape}: no channel axis of size 1 or 3 "
        "(expected NCHW, NHWC, or NHW for grayscale)"
    )


def _images(path: Path, key: str, x: np.ndarray, layout: str | None) -> tuple[np.ndarray, str]:
    """Validate values and return (N,C,H,W) in the stored dtype, plus the layout used."""
    if x.ndim == 3:
        x = x[:, None]
        layout = "NCHW"
    elif x.ndim != 4:
        raise DataError(f"{path}: {key} has {x.ndim} dimensions {x.shape}, expected 3 or 4")
    if len(x) == 0:
        raise DataError(f"{path}: {key} is empty")
    if layout is None:
        layout = _layout(path, x)
    if layout == "NHWC":
        x = x.transpose(0, 3, 1, 2)
    if x.shape[1] not in CHANNELS:
        raise DataError(f"{path}: {key} has {x.shape[1]} channels in {layout}, expected 1 or 3")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x), layout
    if x.dtype.kind != "f":
        raise DataError(
            f"{path}: {key} has dtype {x.dtype}, expected uint8 (0..255) or float (0..1)"
        )
    if not np.isfinite(x).all():
        raise DataError(f"{path}: {key} contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(f"{path}: {key} float values span [{lo:g}, {hi:g}], expected within [0, 1]")
    return np.ascontiguousarray(x), layout


def _labels(path: Path, key: str, y: np.ndarray, n: int) -> np.ndarray:
    if y.ndim != 1:
        raise DataError(f"{path}: {key} has shape {y.shape}, expected 1-D")
    if y.dtype.kind not in "iu":
        raise DataError(f"{path}: {key} has dtype {y.dtype}, expected integers")
    if len(y) != n:
        raise DataError(f"{path}: {key} has {len(y)} labels for {n} images")
    if (y < 0).any():
        raise DataError(f"{path}: {key} has negative labels")
    return y.astype(np.int64)


def load_npz(path: str | Path) -> Dataset:
    """Load and validate; num_classes is the largest label (over both splits) plus one."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        # Our own handle: np.load leaks its file when the zip turns out to be corrupt.
        with open(path, "rb") as fh:
            npz = np.load(fh, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise DataError(f"{path}: a single .npy array, not an .npz archive")
            missing = [k for k in KEYS if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: missing keys {', '.join(missing)} (expected {', '.join(KEYS)}; "
                    f"found {', '.join(npz.files) or 'none'})"
                )
            arrays = {k: npz[k] for k in KEYS}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path}: not a readable .npz archive: {e}") from e
    x_train, layout = _images(path, "x_train", arrays["x_train"], None)
    x_test, _ = _images(path, "x_test", arrays["x_test"], layout)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{path}: x_train images are {x_train.shape[1:]} but x_test images are "
            f"{x_test.shape[1:]} (C,H,W)"
        )
    y_train = _labels(path, "y_train", arrays["y_train"], len(x_train))
    y_test = _labels(path, "y_test", arrays["y_test"], len(x_test))
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    return from_arrays(f"npz:{path}", x_train, y_train, x_test, y_test, num_classes)
