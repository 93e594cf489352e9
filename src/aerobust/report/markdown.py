"""report.md: the blocks as GitHub-flavoured Markdown, figures as relative links."""

from __future__ import annotations

from aerobust.report.blocks import Block, Heading, Paragraph, Table


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _table(t: Table) -> str:
    rule = ["---:" if t.aligned_right(i) else "---" for i in range(len(t.header))]
    body = [[f"**{c}**" if i == t.status_column else c for i, c in enumerate(row)]
            for row in t.rows]
    return "\n".join([_row(t.header), _row(rule), *(_row(r) for r in body)])


def _block(b: Block) -> str:
    if isinstance(b, Heading):
        return f"{'#' * b.level} {b.text}"
    if isinstance(b, Paragraph):
        return b.text
    if isinstance(b, Table):
        return _table(b)
    return f"![{b.alt}]({b.path})\n\n*{b.caption}*"


def render_markdown(blocks: list[Block]) -> str:
    return "\n\n".join(_block(b) for b in blocks) + "\n"
