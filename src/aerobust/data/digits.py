"""The 1,797 real 8x8 digits bundled with scikit-learn, at 28x28: offline, no data_dir."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from aerobust.data.dataset import Dataset, content_checksum, from_arrays

DIGITS_TEST_SIZE = 360
DIGITS_SEED = 0
DIGITS_SIZE = 28


def stratified_split(y: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: per class, a seeded permutation picks its test share.

    Test counts per class follow largest remainders so they sum to exactly ``n_test``;
    only numpy's seeded Generator is used, never sklearn's splitting helpers.
    """
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * n_test / len(y)
    take = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: n_test - int(take.sum())]] += 1
    rng = np.random.default_rng(seed)
    test = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take, strict=True)]
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return train_idx, test_idx


def load_digits(
    test_size: int = DIGITS_TEST_SIZE, seed: int = DIGITS_SEED, size: int = DIGITS_SIZE
) -> Dataset:
    """Resize bilinearly to ``size`` so the MNIST-shaped models run on it unchanged.

    The checksum covers the original 0..16 pixels, the labels and the split, not the
    resized floats, whose last bits may differ between CPUs.
    """
    from sklearn.datasets import load_digits as sk_load_digits  # slow import: only when used

    bunch = sk_load_digits()
    raw = np.asarray(bunch.images, dtype=np.uint8).reshape(-1, 1, 8, 8)
    y = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = stratified_split(y, test_size, seed)
    x = torch.from_numpy(raw).to(torch.float32).div_(16.0)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    x_np = x.numpy()
    checksum = content_checksum(
        [
            ("x_train", raw[train_idx]),
            ("y_train", y[train_idx]),
            ("x_test", raw[test_idx]),
            ("y_test", y[test_idx]),
            (f"bilinear{size}", np.zeros(0, np.uint8)),
        ]
    )
    return from_arrays(
        "digits", x_np[train_idx], y[train_idx], x_np[test_idx], y[test_idx], 10, checksum
    )
