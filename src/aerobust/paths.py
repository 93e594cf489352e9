"""Every file and folder a user names on the command line passes through here, so that
one that cannot be read or created is one line naming it (exit 2), checked before any
work starts: an ``--out`` that names a file fails at once, not after an hour's audit.
What the files hold is checked by their readers (``read_checkpoint``, the data loaders),
which raise ``UserError`` naming the file too."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from aerobust.errors import UserError


def _nearest_existing(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path(".")


def folder_problem(path: Path) -> str | None:
    """Why ``path`` can neither be used nor made as a folder; None when it can."""
    if path.exists():
        return None if path.is_dir() else "exists and is not a folder"
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        return f"cannot be made: {base} is a file, not a folder"
    if not os.access(base, os.W_OK | os.X_OK):
        return f"cannot be made: no permission to write in {base}"
    return None


def folder(text: str) -> Path:
    """An argparse type: a folder to read or write in (made when absent)."""
    path = Path(text).expanduser()
    problem = folder_problem(path)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{path}: {problem}")
    return path


def file_to_write(text: str) -> Path:
    """An argparse type: a file to write (replaced when it exists)."""
    path = Path(text).expanduser()
    problem = "is a folder, not a file" if path.is_dir() else folder_problem(path.parent)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{path}: {problem}")
    return path


def file_to_read(path: Path, what: str) -> Path:
    """``path`` when it is a file; else one ``UserError`` naming it."""
    if path.is_dir():
        raise UserError(f"{path}: a folder, not {what}")
    if not path.is_file():
        raise UserError(f"{path}: no such {what}")
    return path


def os_error_line(exc: OSError) -> str | None:
    """An operating-system error about a named path, as one line naming it; None when it
    names no path (then it is not a user's path problem)."""
    if exc.filename is None:
        return None
    return f"{exc.filename}: {exc.strerror or type(exc).__name__}"
