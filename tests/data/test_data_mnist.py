from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from aerobust.data import load_dataset
from aerobust.data import mnist as mnist_mod
from aerobust.data.mnist import load_mnist, read_split
from aerobust.errors import DataError

SHARED_MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.parametrize("gz", [False, True])
def test_loads_raw_and_gz_with_same_content(
    tmp_path: Path, build: SimpleNamespace, gz: bool
) -> None:
    raw = load_mnist(build.write_mnist(tmp_path / "raw"), verify_md5=False)
    other = load_mnist(build.write_mnist(tmp_path / "other", gz=gz), verify_md5=False)
    x, y = build.fake_mnist_arrays(12, 1)
    assert raw.x_train.shape == (12, 1, 28, 28) and raw.x_test.shape == (7, 1, 28, 28)
    assert torch.equal(raw.x_train[:, 0], torch.from_numpy(x).float() / 255)
    assert raw.y_train.tolist() == y.tolist() and raw.y_train.dtype == torch.int64
    assert raw.name == "mnist" and raw.num_classes == 10
    assert other.checksum == raw.checksum
    assert torch.equal(other.x_test, raw.x_test)


def test_files_may_sit_in_a_mnist_subfolder(
    tmp_path: Path, build: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEROBUST_SKIP_MD5", "1")  # the opt-out for IDX files of one's own
    build.write_mnist(tmp_path / "mnist")
    assert load_dataset("mnist", tmp_path).x_train.shape[0] == 12


def test_missing_files_listed_with_download_hint(tmp_path: Path, build: SimpleNamespace) -> None:
    build.write_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as e:
        load_dataset("mnist", tmp_path)
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "train-labels" not in msg
    assert str(tmp_path / "mnist") in msg
    assert f"aerobust data download mnist --data-dir {tmp_path}" in msg


def _corrupt(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "make", "match"),
    [
        ("train-images-idx3-ubyte", lambda b, x, y: b.idx_bytes(x, magic=0x801), "magic number"),
        ("train-labels-idx1-ubyte", lambda b, x, y: b.idx_bytes(y, magic=0x803), "magic number"),
        ("train-images-idx3-ubyte", lambda b, x, y: b.idx_bytes(x)[:-5], "truncated"),
        ("train-images-idx3-ubyte", lambda b, x, y: b.idx_bytes(x)[:10], "truncated"),
        ("train-images-idx3-ubyte", lambda b, x, y: b"", "truncated"),
        ("train-labels-idx1-ubyte", lambda b, x, y: b.idx_bytes(y) + b"\0", "trailing"),
        ("train-images-idx3-ubyte", lambda b, x, y: b.idx_bytes(x[:, :27, :27]), "28x28"),
        ("train-labels-idx1-ubyte", lambda b, x, y: b.idx_bytes(y + 1), "label 10"),
        (
            "train-images-idx3-ubyte",
            lambda b, x, y: np.array([0x803, 2**16, 2**16, 2**16], ">u4").tobytes(),
            "implausibly large",
        ),
    ],
)
def test_malformed_idx_is_one_clear_error(
    tmp_path: Path, build: SimpleNamespace, name: str, make: object, match: str
) -> None:
    build.write_mnist(tmp_path)
    x, y = build.fake_mnist_arrays(12, 1)
    path = _corrupt(tmp_path, name, make(build, x, y))  # type: ignore[operator]
    with pytest.raises(DataError, match=match) as e:
        load_mnist(tmp_path, verify_md5=False)
    assert str(path) in str(e.value)


def test_count_mismatch_names_both_files(tmp_path: Path, build: SimpleNamespace) -> None:
    build.write_mnist(tmp_path)
    _, y = build.fake_mnist_arrays(11, 1)
    _corrupt(tmp_path, "train-labels-idx1-ubyte", build.idx_bytes(y))
    with pytest.raises(DataError, match=r"12 images but .* 11 labels") as e:
        load_mnist(tmp_path, verify_md5=False)
    assert "train-images-idx3-ubyte" in str(e.value)


def test_truncated_and_non_gzip_files(tmp_path: Path, build: SimpleNamespace) -> None:
    build.write_mnist(tmp_path, gz=True)
    gz = tmp_path / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-40])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz"):
        load_mnist(tmp_path, verify_md5=False)
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read as IDX"):
        load_mnist(tmp_path, verify_md5=False)


def test_official_gz_must_match_its_md5(tmp_path: Path, build: SimpleNamespace) -> None:
    build.write_mnist(tmp_path, gz=True)
    with pytest.raises(DataError, match="does not match the official md5") as e:
        load_dataset("mnist", tmp_path)
    assert "f68b3c2dcbeaaa9fbdd348bbdeb94873" in str(e.value)  # train-images, checked first


def test_write_test_split_npz_on_small_files(
    tmp_path: Path, build: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEROBUST_SKIP_MD5", "1")
    build.write_mnist(tmp_path, n_test=10)
    out = mnist_mod.write_test_split_npz(tmp_path, tmp_path / "out" / "split.npz", n_train=6)
    ds = load_dataset(f"npz:{out}")
    x, y = build.fake_mnist_arrays(10, 2)
    assert ds.x_train.shape == (6, 1, 28, 28) and ds.x_test.shape == (4, 1, 28, 28)
    assert ds.y_test.tolist() == y[6:].tolist()
    assert torch.equal(ds.x_test[:, 0], torch.from_numpy(x[6:]).float() / 255)
    with pytest.raises(DataError, match="n_train"):
        mnist_mod.write_test_split_npz(tmp_path, tmp_path / "bad.npz", n_train=10)
    assert not (tmp_path / "bad.npz").exists()


def test_official_raw_idx_must_match_its_md5(tmp_path: Path, build: SimpleNamespace) -> None:
    """A raw IDX file under an official name is checked like the archive it came from."""
    build.write_mnist(tmp_path)
    with pytest.raises(DataError, match="does not match the official md5") as e:
        load_dataset("mnist", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "train-images-idx3-ubyte") in msg
    assert "6bbc9ace898e44ae57da46a324031adb" in msg  # the uncompressed file's official md5


def _shared(*names: str) -> None:
    missing = [n for n in names if not (SHARED_MNIST / n).is_file()]
    if missing:
        pytest.skip(f"{', '.join(missing)} absent from {SHARED_MNIST}")


TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
SHARED_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def test_real_mnist_test_split(tmp_path: Path) -> None:
    _shared(*SHARED_FILES[2:])
    x, y = read_split(SHARED_MNIST, "t10k")
    assert x.shape == (10_000, 1, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == TEST_CLASS_COUNTS
    out = mnist_mod.write_test_split_npz(SHARED_MNIST, tmp_path / "mnist_split.npz")
    ds = load_dataset(f"npz:{out}")
    assert (len(ds.y_train), len(ds.y_test), ds.num_classes) == (8000, 2000, 10)
    counts = torch.bincount(ds.y_train, minlength=10) + torch.bincount(ds.y_test, minlength=10)
    assert counts.tolist() == TEST_CLASS_COUNTS


def test_real_mnist_full_set() -> None:
    """The paper's data: 60,000 / 10,000, every file checked against its official md5."""
    _shared(*SHARED_FILES)
    ds = load_dataset("mnist", SHARED_MNIST)
    assert (len(ds.y_train), len(ds.y_test), ds.num_classes) == (60_000, 10_000, 10)
    assert torch.bincount(ds.y_train, minlength=10).tolist() == TRAIN_CLASS_COUNTS
    assert torch.bincount(ds.y_test, minlength=10).tolist() == TEST_CLASS_COUNTS
    assert ds.x_train.shape == (60_000, 1, 28, 28)


def test_real_mnist_flipped_byte_is_refused(tmp_path: Path) -> None:
    """One flipped byte in the uncompressed training images: one line, both md5s."""
    _shared(*SHARED_FILES)
    for name in SHARED_FILES:
        (tmp_path / name).symlink_to(SHARED_MNIST / name)
    images = tmp_path / "train-images-idx3-ubyte"
    data = bytearray((SHARED_MNIST / images.name).read_bytes())
    data[5000] ^= 0xFF
    images.unlink()
    images.write_bytes(bytes(data))
    with pytest.raises(DataError, match="does not match the official md5") as e:
        load_dataset("mnist", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and str(images) in msg
    assert "6bbc9ace898e44ae57da46a324031adb" in msg
