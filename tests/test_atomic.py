"""Atomic writes: whole files only, no temp files left, the usual permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from aerobust import atomic


def test_written_file_gets_the_mode_open_would_give(tmp_path: Path) -> None:
    atomic.write_text(tmp_path / "a.json", "{}")
    plain = tmp_path / "plain"
    plain.write_text("{}")
    mode = stat.S_IMODE((tmp_path / "a.json").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode)
    assert mode & stat.S_IRGRP or os.umask(os.umask(0)) & stat.S_IRGRP


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "rows.json"
    atomic.write_text(target, "old")

    def broken(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic.write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.json"]
