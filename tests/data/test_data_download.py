import hashlib
import io
import urllib.error
from collections.abc import Callable
from pathlib import Path

import pytest

from aerobust.data import download
from aerobust.data.sources import MNIST_MD5, REMOTE, RemoteFile
from aerobust.errors import DataError, UserError

PAYLOAD = {"a.gz": b"first file", "b.gz": b"second file"}


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


@pytest.fixture
def fake_remote(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace mnist's official file list with two small files on two mirrors."""
    files = tuple(
        RemoteFile(n, _md5(b), (f"https://m1.invalid/{n}", f"http://m2.invalid/{n}"))
        for n, b in PAYLOAD.items()
    )
    monkeypatch.setitem(REMOTE, "mnist", files)


def _opener(serve: dict[str, bytes], calls: list[str]) -> Callable[..., io.BytesIO]:
    def opener(url: str, timeout: float) -> io.BytesIO:
        calls.append(url)
        assert timeout > 0
        if url not in serve:
            raise urllib.error.URLError("Name or service not known")
        return io.BytesIO(serve[url])

    return opener


def test_downloads_verifies_and_skips_present(tmp_path: Path, fake_remote: None) -> None:
    calls: list[str] = []
    serve = {f"https://m1.invalid/{n}": b for n, b in PAYLOAD.items()}
    paths = download("mnist", tmp_path, progress=False, opener=_opener(serve, calls))
    assert paths == [tmp_path / "mnist" / n for n in PAYLOAD]
    assert [p.read_bytes() for p in paths] == list(PAYLOAD.values())
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(PAYLOAD)  # no temps
    calls.clear()
    assert download("mnist", tmp_path, progress=False, opener=_opener({}, calls)) == paths
    assert calls == []


def test_falls_back_to_second_mirror(tmp_path: Path, fake_remote: None) -> None:
    calls: list[str] = []
    serve = {f"http://m2.invalid/{n}": b for n, b in PAYLOAD.items()}
    download("mnist", tmp_path, progress=False, opener=_opener(serve, calls))
    assert calls[:2] == ["https://m1.invalid/a.gz", "http://m2.invalid/a.gz"]
    assert (tmp_path / "mnist" / "b.gz").read_bytes() == PAYLOAD["b.gz"]


def test_replaces_a_corrupt_existing_file(tmp_path: Path, fake_remote: None) -> None:
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "a.gz").write_bytes(b"half a fi")
    serve = {f"https://m1.invalid/{n}": b for n, b in PAYLOAD.items()}
    download("mnist", tmp_path, progress=False, opener=_opener(serve, []))
    assert (tmp_path / "mnist" / "a.gz").read_bytes() == PAYLOAD["a.gz"]


def test_md5_mismatch_is_refused_and_not_kept(tmp_path: Path) -> None:
    bad = b"this is not the MNIST training set"
    serve = {url: bad for f in REMOTE["mnist"] for url in f.urls}
    with pytest.raises(DataError) as e:
        download("mnist", tmp_path, progress=False, opener=_opener(serve, []))
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg
    assert MNIST_MD5["train-images-idx3-ubyte.gz"] in msg and _md5(bad) in msg
    assert list((tmp_path / "mnist").iterdir()) == []


@pytest.mark.parametrize(
    "error", [urllib.error.URLError("Name or service not known"), TimeoutError("timed out")]
)
def test_offline_lists_files_to_place_by_hand(tmp_path: Path, error: Exception) -> None:
    def offline(url: str, timeout: float) -> io.BytesIO:
        raise error

    with pytest.raises(DataError, match="network unreachable") as e:
        download("mnist", tmp_path, progress=False, opener=offline)
    msg = str(e.value)
    assert f"place these files in {tmp_path / 'mnist'} by hand" in msg
    for name, md5 in MNIST_MD5.items():
        assert f"{name} (md5 {md5}" in msg
    assert "ossci-datasets.s3.amazonaws.com" in msg and "yann.lecun.com" in msg
    assert list((tmp_path / "mnist").iterdir()) == []


def test_file_urls_through_the_default_opener(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "cifar-10-python.tar.gz").write_bytes(b"tiny archive")
    file = RemoteFile(
        "cifar-10-python.tar.gz",
        _md5(b"tiny archive"),
        ((served / "absent.tar.gz").as_uri(), (served / "cifar-10-python.tar.gz").as_uri()),
    )
    monkeypatch.setitem(REMOTE, "cifar10", (file,))
    paths = download("cifar10", tmp_path / "data", progress=True)
    assert paths == [tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz"]
    assert paths[0].read_bytes() == b"tiny archive"


def test_names_without_files() -> None:
    assert download("digits", "/nonexistent", progress=False) == []
    with pytest.raises(UserError, match="your own file"):
        download("npz:/x.npz", "/tmp")
    with pytest.raises(UserError, match="digits, mnist, cifar10"):
        download("svhn", "/tmp")
