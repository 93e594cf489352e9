"""report.html: one self-contained page. Inline CSS, every figure a base64 ``data:``
URI, no scripts and no external resources, so it can be mailed or archived as is."""

from __future__ import annotations

import base64
import html
import re

from aerobust.report.blocks import Block, Figure, Heading, Paragraph, Table

CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #fff; color: #1f2328;
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 76rem; margin: 0 auto; padding: 2rem 1.5rem 4rem; }
h1 { font-size: 1.9rem; line-height: 1.25; margin: 0 0 1rem; }
h2 { font-size: 1.45rem; margin: 2.6rem 0 .8rem; padding-bottom: .3rem;
  border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1.15rem; margin: 1.8rem 0 .6rem; }
p { margin: .6rem 0; max-width: 60rem; }
nav ol { columns: 2; margin: .4rem 0 1.5rem; }
nav a { color: #0969da; text-decoration: none; }
code { font: .86em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  background: #f6f8fa; padding: .1em .3em; border-radius: 4px; overflow-wrap: break-word; }
.table-wrap { overflow-x: auto; margin: .8rem 0; }
table { border-collapse: collapse; font-size: .92rem; }
th, td { padding: .35rem .65rem; border-bottom: 1px solid #d8dee4; vertical-align: top;
  text-align: left; }
thead th { background: #f6f8fa; border-bottom: 2px solid #d0d7de; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; padding: .05rem .55rem; border-radius: 1rem;
  font-weight: 600; font-size: .85rem; white-space: nowrap; }
.agrees, .no-masking-detected { background: #dafbe1; color: #116329; }
.disagrees, .masking { background: #ffebe9; color: #a40e26; }
.mixed { background: #fff8c5; color: #7d4e00; }
.not-run, .no-data, .inconclusive { background: #eaeef2; color: #57606a; }
figure { margin: 1rem 0 1.6rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #d8dee4; }
figcaption { font-size: .92rem; color: #57606a; margin-top: .4rem; max-width: 60rem; }
"""


def _inline(text: str) -> str:
    """Escape, then the two inline marks the blocks may use: `code` and **bold**."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _table(t: Table) -> str:
    def cell(tag: str, i: int, text: str) -> str:
        content = _inline(text)
        if tag == "td" and i == t.status_column:
            content = f'<span class="badge {_slug(text)}">{content}</span>'
        cls = ' class="num"' if t.aligned_right(i) else ""
        return f"<{tag}{cls}>{content}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(t.header))
    body = "\n".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>"
                     for row in t.rows)
    return (f'<div class="table-wrap"><table>\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody></table></div>")


def _figure(f: Figure) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(f.alt)}">'
            f"<figcaption>{_inline(f.caption)}</figcaption></figure>")


def _block(b: Block, anchor: str) -> str:
    if isinstance(b, Heading):
        return f'<h{b.level} id="{anchor}">{_inline(b.text)}</h{b.level}>'
    if isinstance(b, Paragraph):
        return f"<p>{_inline(b.text)}</p>"
    if isinstance(b, Table):
        return _table(b)
    return _figure(b)


def _anchors(blocks: list[Block]) -> list[str]:
    """A unique id per heading ("" for other blocks): parts repeat under every section."""
    seen: dict[str, int] = {}
    out = []
    for b in blocks:
        slug = _slug(b.text) if isinstance(b, Heading) else ""
        if slug:
            seen[slug] = seen.get(slug, 0) + 1
            slug += f"-{seen[slug]}" if seen[slug] > 1 else ""
        out.append(slug)
    return out


def render_html(blocks: list[Block]) -> str:
    """The page, with a contents list of the level-2 sections after the title."""
    title = next((b.text for b in blocks if isinstance(b, Heading) and b.level == 1), "Report")
    anchors = _anchors(blocks)
    sections = [(b.text, a) for b, a in zip(blocks, anchors, strict=True)
                if isinstance(b, Heading) and b.level == 2]
    nav = ("<nav><strong>Contents</strong><ol>"
           + "".join(f'<li><a href="#{a}">{_inline(s)}</a></li>' for s, a in sections)
           + "</ol></nav>")
    parts = [_block(b, a) for b, a in zip(blocks, anchors, strict=True)]
    first_h2 = next((i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.level == 2),
                    len(parts))
    parts.insert(first_h2, nav)
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title.replace('`', ''))}</title>\n<style>{CSS}</style>\n"
            f"</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n")
