"""The report as a list of format-neutral blocks, so report.md and report.html are two
renderings of one document and never disagree.

Text in a block may carry two inline marks, written as in Markdown: `code` and
**bold**. Everything else is literal text that each renderer escapes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heading:
    level: int  # 1 = the title
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    """``numeric[i]``: column i holds numbers (right-aligned). ``status_column``: a
    column of verdict words that the HTML shows as coloured badges."""

    header: list[str]
    rows: list[list[str]]
    numeric: list[bool] = field(default_factory=list)
    status_column: int | None = None

    def aligned_right(self, i: int) -> bool:
        return i < len(self.numeric) and self.numeric[i]


@dataclass(frozen=True)
class Figure:
    """A PNG under ``report_files/<name>.png`` (Markdown) or inline (HTML)."""

    name: str
    png: bytes
    alt: str
    caption: str

    @property
    def path(self) -> str:
        return f"report_files/{self.name}.png"


Block = Heading | Paragraph | Table | Figure
