"""Fetch the official files, verify their md5 while streaming, and rename into place."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from aerobust.data.registry import DATASETS, NPZ_PREFIX, unknown_name
from aerobust.data.sources import REMOTE, RemoteFile, md5_file
from aerobust.errors import DataError, UserError

Opener = Callable[..., Any]  # like urllib.request.urlopen(url, timeout=...): a readable response
TIMEOUT_S = 30.0
_NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException)


class _Mismatch(Exception):
    def __init__(self, actual: str) -> None:
        super().__init__(actual)
        self.actual = actual


def _fetch_to(
    url: str, target: Path, f: RemoteFile, opener: Opener, timeout: float, progress: bool
) -> None:
    """Stream to a temp file beside ``target``; only a file with the right md5 is renamed."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        md5 = hashlib.md5()
        with os.fdopen(fd, "wb") as out, opener(url, timeout=timeout) as resp:
            headers = getattr(resp, "headers", None)
            length = str(headers.get("Content-Length", "")) if headers is not None else ""
            with tqdm(
                total=int(length) if length.isdigit() else None,
                unit="B",
                unit_scale=True,
                desc=f.name,
                disable=not progress,
                leave=False,
            ) as bar:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    out.write(chunk)
                    md5.update(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if md5.hexdigest() != f.md5:
            raise _Mismatch(md5.hexdigest())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _manual_hint(dest: Path, files: list[RemoteFile]) -> str:
    listed = ", ".join(f"{f.name} (md5 {f.md5}, from {f.urls[0]})" for f in files)
    return f"place these files in {dest} by hand: {listed}"


def download(
    name: str,
    data_dir: str | Path,
    progress: bool = True,
    *,
    opener: Opener | None = None,
    timeout: float = TIMEOUT_S,
) -> list[Path]:
    """Download a dataset's official files into data_dir/<name>/ and return their paths.

    Files already there with the official md5 are kept; mirrors are tried in order. "digits"
    ships with scikit-learn, so there is nothing to fetch. ``opener`` replaces
    urllib.request.urlopen (tests serve local bytes through it).
    """
    if name.startswith(NPZ_PREFIX):
        raise UserError(f"{name}: an npz dataset is your own file; there is nothing to download")
    if name not in DATASETS:
        raise unknown_name(name)
    if name not in REMOTE:
        return []
    opener = opener or urllib.request.urlopen
    dest = Path(data_dir).expanduser() / name
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data folder {dest}: {e}") from e
    files = REMOTE[name]
    paths: list[Path] = []
    for i, f in enumerate(files):
        target = dest / f.name
        paths.append(target)
        if target.is_file() and md5_file(target) == f.md5:
            continue
        failures: list[str] = []
        for url in f.urls:
            try:
                _fetch_to(url, target, f, opener, timeout, progress)
                break
            except _Mismatch as m:
                raise DataError(
                    f"{f.name} downloaded from {url} has md5 {m.actual}, expected {f.md5}; "
                    f"it was not kept as {target}"
                ) from None
            except _NETWORK_ERRORS as e:
                failures.append(f"{url}: {getattr(e, 'reason', e)}")
        else:
            todo = [
                g
                for g in files[i:]
                if not ((dest / g.name).is_file() and md5_file(dest / g.name) == g.md5)
            ]
            raise DataError(
                f"cannot download {name}: network unreachable ({'; '.join(failures)}); "
                f"{_manual_hint(dest, todo)}"
            )
    return paths
