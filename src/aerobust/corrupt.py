"""Stored results that do not parse, or hold another key's result: set aside, never
deleted (the user may want to see what broke them) and never fatal (they are recomputed)."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from aerobust.errors import UserError


def set_aside(path: Path, problem: str, then: str = "recomputing it") -> Path:
    """Rename ``path`` to ``NAME.corrupt-<UTC time>`` and say so in one warning line on
    stderr; returns the new path. A file another process set aside first is left be."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        path.rename(aside)
    except FileNotFoundError:
        return aside
    except OSError as exc:
        raise UserError(f"{path}: {problem}, and it cannot be moved aside "
                        f"({exc.strerror}); move or delete it") from None
    print(f"aerobust: warning: {path}: {problem}; moved to {aside.name}, {then}",
          file=sys.stderr)
    return aside
