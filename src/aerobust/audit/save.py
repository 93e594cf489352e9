"""An audit's files: its record as JSON and the same report blocks as Markdown and HTML
(with their figures), so a saved audit reads like the ``reproduce`` report's audit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aerobust import atomic
from aerobust.report.audit import audit_blocks
from aerobust.report.blocks import Figure
from aerobust.report.html import render_html
from aerobust.report.markdown import render_markdown


def save_audit(row: dict[str, Any], out: Path, title: str) -> Path:
    """``row`` (an audit's ``to_dict``, with what it was run on) as ``audit.json``,
    ``audit.md``, ``audit.html`` and the figures, in ``out`` (``Audit.save``)."""
    blocks = audit_blocks(row, title)
    atomic.write_json(out / "audit.json", row)
    for fig in (b for b in blocks if isinstance(b, Figure)):
        atomic.write_bytes(out / fig.path, fig.png)
    atomic.write_text(out / "audit.md", render_markdown(blocks))
    atomic.write_text(out / "audit.html", render_html(blocks))
    return out
