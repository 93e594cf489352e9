import os
import pickle
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from aerobust.data import load_dataset
from aerobust.data.cifar10 import load_cifar10, read_batch
from aerobust.errors import DataError

SMALL = (15, 3)  # write_cifar_dir's default: 3 samples per batch


@pytest.mark.parametrize("py2", [True, False])
def test_loads_batches_dir(tmp_path: Path, build: SimpleNamespace, py2: bool) -> None:
    build.write_cifar_dir(tmp_path / "cifar-10-batches-py", py2=py2)
    ds = load_cifar10(tmp_path, expected=SMALL)
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    data, labels = build.fake_batch(3, 0)
    assert torch.equal(ds.x_train[:3], torch.from_numpy(data.reshape(3, 3, 32, 32)).float() / 255)
    assert ds.y_train[:3].tolist() == labels and ds.y_train.dtype == torch.int64
    assert (ds.name, ds.num_classes, ds.channels, ds.image_size) == ("cifar10", 10, 3, 32)


def test_subfolder_and_official_counts(tmp_path: Path, build: SimpleNamespace) -> None:
    build.write_cifar_dir(tmp_path / "cifar10" / "cifar-10-batches-py")
    with pytest.raises(DataError, match="15 training images, expected 50000"):
        load_dataset("cifar10", tmp_path)


def test_missing_data_gives_hint(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="aerobust data download cifar10") as e:
        load_dataset("cifar10", tmp_path)
    assert "c58f30108f718f92721af3b95e74349a" in str(e.value)


def test_missing_batch_file(tmp_path: Path, build: SimpleNamespace) -> None:
    folder = build.write_cifar_dir(tmp_path / "cifar-10-batches-py")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10(tmp_path, expected=SMALL)


def test_archive_is_extracted_then_reused(tmp_path: Path, build: SimpleNamespace) -> None:
    src = build.write_cifar_dir(tmp_path / "src" / "cifar-10-batches-py")
    d = tmp_path / "data"
    d.mkdir()
    build.tar_of_dir(d / "cifar-10-python.tar.gz", src)
    first = load_cifar10(d, expected=SMALL, verify_md5=False)
    assert (d / "cifar-10-batches-py" / "test_batch").is_file()
    assert sorted(p.name for p in d.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    (d / "cifar-10-python.tar.gz").write_bytes(b"corrupt: must not be read again")
    assert load_cifar10(d, expected=SMALL).checksum == first.checksum


def test_official_archive_md5_checked_before_extraction(
    tmp_path: Path, build: SimpleNamespace
) -> None:
    src = build.write_cifar_dir(tmp_path / "src" / "cifar-10-batches-py")
    d = tmp_path / "data" / "cifar10"
    d.mkdir(parents=True)
    build.tar_of_dir(d / "cifar-10-python.tar.gz", src)
    with pytest.raises(DataError, match="does not match the official md5 c58f3010"):
        load_dataset("cifar10", tmp_path / "data")
    assert [p.name for p in d.iterdir()] == ["cifar-10-python.tar.gz"]


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    ("evil", "match"),
    [
        (_member("cifar-10-batches-py/../../evil"), "'..' escapes"),
        (_member("../evil"), "'..' escapes"),
        (_member("/tmp/aerobust-test-evil-abs"), "absolute path"),
        (_member("cifar-10-batches-py/evil", tarfile.SYMTYPE, "../../evil"), "links"),
        (_member("cifar-10-batches-py/evil", tarfile.LNKTYPE, "/etc/passwd"), "links"),
        (_member("cifar-10-batches-py/evil", tarfile.CHRTYPE), "device"),
        (_member("cifar-10-batches-py/evil", tarfile.FIFOTYPE), "device"),
    ],
)
def test_unsafe_archive_refused_before_writing_anything(
    tmp_path: Path, build: SimpleNamespace, evil: tarfile.TarInfo, match: str
) -> None:
    d = tmp_path / "a" / "b"
    good = [(_member("cifar-10-batches-py/data_batch_1"), b"first, harmless")]
    payload = b"pwned" if evil.isreg() else None
    build.write_tar(d / "cifar-10-python.tar.gz", [*good, (evil, payload)])
    with pytest.raises(DataError, match=match) as e:
        load_cifar10(d, expected=SMALL, verify_md5=False)
    assert repr(evil.name) in str(e.value)
    assert [p.name for p in d.iterdir()] == ["cifar-10-python.tar.gz"]  # not even the good one
    assert not (tmp_path / "a" / "evil").exists() and not (tmp_path / "evil").exists()
    assert not Path("/tmp/aerobust-test-evil-abs").exists()


def test_archive_without_batches_folder(tmp_path: Path, build: SimpleNamespace) -> None:
    build.write_tar(tmp_path / "cifar-10-python.tar.gz", [(_member("other/file"), b"x")])
    with pytest.raises(DataError, match="no cifar-10-batches-py"):
        load_cifar10(tmp_path, expected=SMALL, verify_md5=False)
    assert [p.name for p in tmp_path.iterdir()] == ["cifar-10-python.tar.gz"]


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, 4])
def test_pickle_with_code_is_refused_without_running_it(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": _Evil(marker), "labels": [1]}, protocol=protocol))
    with pytest.raises(DataError, match=r"refused to unpickle (posix|os|nt)\.system") as e:
        read_batch(path)
    assert str(path) in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ([1, 2], "expected a dict"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "missing 'data' or 'labels'"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"shape \(2, 100\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "label 10 at index 1"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, -1]}, "label -1"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]}, "integers"),
    ],
)
def test_malformed_batches(tmp_path: Path, obj: object, match: str) -> None:
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(obj, protocol=4))
    with pytest.raises(DataError, match=match) as e:
        read_batch(path)
    assert str(path) in str(e.value)


def test_truncated_pickle(tmp_path: Path, build: SimpleNamespace) -> None:
    path = tmp_path / "test_batch"
    path.write_bytes(build.py2_batch_pickle(*build.fake_batch(2, 0))[:-100])
    with pytest.raises(DataError, match="not a readable CIFAR-10 batch"):
        read_batch(path)
