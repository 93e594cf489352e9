from pathlib import Path

import numpy as np
import pytest
import torch

from aerobust.data import load_dataset
from aerobust.errors import DataError


def _save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _valid(n_train: int = 6, n_test: int = 4, shape: tuple[int, ...] = (8, 8, 3)) -> dict:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "y_train": np.arange(n_train) % 3,
        "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "y_test": np.array([4] + [0] * (n_test - 1), dtype=np.uint8),
    }


def test_uint8_nhwc(tmp_path: Path) -> None:
    arrays = _valid()
    path = _save(tmp_path / "mine.npz", **arrays)
    ds = load_dataset(f"npz:{path}")
    assert ds.name == f"npz:{path.resolve()}"
    assert ds.x_train.shape == (6, 3, 8, 8) and ds.x_test.shape == (4, 3, 8, 8)
    expected = torch.from_numpy(arrays["x_train"]).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(ds.x_train, expected) and ds.x_train.is_contiguous()
    assert ds.num_classes == 5  # max over both splits + 1
    assert ds.y_test.dtype == torch.int64


def test_layout_does_not_change_checksum(tmp_path: Path) -> None:
    nhwc = _valid()
    nchw = {k: (v.transpose(0, 3, 1, 2) if k.startswith("x") else v) for k, v in nhwc.items()}
    a = load_dataset(f"npz:{_save(tmp_path / 'a.npz', **nhwc)}")
    b = load_dataset(f"npz:{_save(tmp_path / 'b.npz', **nchw)}")
    assert a.checksum == b.checksum and torch.equal(a.x_test, b.x_test)


def test_float_nchw(tmp_path: Path) -> None:
    arrays = _valid(shape=(1, 5, 5))
    arrays["x_train"] = arrays["x_train"] / 255.0
    arrays["x_test"] = (arrays["x_test"] / 255.0).astype(np.float32)
    ds = load_dataset(f"npz:{_save(tmp_path / 'f.npz', **arrays)}")
    assert ds.x_train.shape == (6, 1, 5, 5) and ds.x_train.dtype == torch.float32
    assert torch.allclose(ds.x_train, torch.from_numpy(arrays["x_train"]).float())


def test_nhw_grayscale(tmp_path: Path) -> None:
    ds = load_dataset(f"npz:{_save(tmp_path / 'g.npz', **_valid(shape=(7, 7)))}")
    assert ds.x_train.shape == (6, 1, 7, 7) and ds.channels == 1 and ds.image_size == 7


@pytest.mark.parametrize(
    ("shape", "chw"),
    [((3, 3, 3), (3, 3, 3)), ((3, 3, 1), (1, 3, 3)), ((1, 9, 3), (1, 9, 3))],
)
def test_ambiguous_layouts(tmp_path: Path, shape: tuple, chw: tuple) -> None:
    ds = load_dataset(f"npz:{_save(tmp_path / 'amb.npz', **_valid(shape=shape))}")
    assert tuple(ds.x_train.shape[1:]) == chw


def _with(**changes: object) -> dict:
    arrays = _valid()
    for k, v in changes.items():
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    return arrays


BAD = {
    "missing key": (_with(y_test=None), "missing keys y_test"),
    "x 2-D": (_with(x_train=np.zeros((6, 64), np.uint8)), "2 dimensions"),
    "no channel axis": (_with(x_train=np.zeros((6, 5, 8, 8), np.uint8)), "no channel axis"),
    "float > 1": (_with(x_train=np.full((6, 8, 8, 3), 2.0)), r"span \[2, 2\]"),
    "float < 0": (_with(x_test=np.full((4, 8, 8, 3), -0.5, np.float32)), "x_test float values"),
    "nan": (_with(x_train=np.full((6, 8, 8, 3), np.nan)), "NaN"),
    "inf": (_with(x_train=np.full((6, 8, 8, 3), np.inf)), "infinite"),
    "int32 x": (_with(x_train=np.zeros((6, 8, 8, 3), np.int32)), "dtype int32"),
    "empty x": (_with(x_train=np.zeros((0, 8, 8, 3), np.uint8), y_train=np.zeros(0, int)), "empty"),
    "labels 2-D": (_with(y_train=np.zeros((6, 1), int)), "expected 1-D"),
    "float labels": (_with(y_train=np.zeros(6)), "expected integers"),
    "negative label": (_with(y_test=np.array([0, 1, -1, 2])), "negative"),
    "count mismatch": (_with(y_train=np.zeros(5, int)), "5 labels for 6 images"),
    "test shape": (_with(x_test=np.zeros((4, 9, 9, 3), np.uint8)), "x_test images are"),
    "test channels": (_with(x_test=np.zeros((4, 8, 8, 1), np.uint8)), "x_test images are"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_npz_is_one_clear_error(tmp_path: Path, case: str) -> None:
    arrays, match = BAD[case]
    path = _save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match) as e:
        load_dataset(f"npz:{path}")
    assert str(path) in str(e.value)


def test_unreadable_files(tmp_path: Path) -> None:
    cases = {
        "absent.npz": (None, "no such file"),
        "text.npz": (b"just some text, not a zip", "not a readable .npz"),
        "truncated.npz": (None, "not a readable .npz"),
    }
    _save(tmp_path / "full.npz", **_valid())
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "full.npz").read_bytes()[:300])
    (tmp_path / "text.npz").write_bytes(cases["text.npz"][0])
    np.save(tmp_path / "single.npy", np.zeros(3))
    cases["single.npy"] = (None, "not an .npz archive")
    obj = _with(y_test=np.array([0, 1, 2, None], dtype=object))
    np.savez(tmp_path / "objects.npz", **obj)
    cases["objects.npz"] = (None, "not a readable .npz")
    for name, (_, match) in cases.items():
        with pytest.raises(DataError, match=match) as e:
            load_dataset(f"npz:{tmp_path / name}")
        assert name in str(e.value)
