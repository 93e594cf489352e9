"""Write docs/api.md from the docstrings of the public callables: ``python docs/make_api.py``.

The page is generated rather than written by hand so that it cannot say something the code
does not: ``tests/test_docs.py`` fails when docs/api.md differs from what this script writes
now, and runs every example on the page.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

PAGE = Path(__file__).resolve().parent / "api.md"

# (the name users write, the module that exports it, the attribute)
CALLABLES = [
    ("aerobust.load_dataset", "aerobust", "load_dataset"),
    ("aerobust.load_model", "aerobust", "load_model"),
    ("aerobust.AEClassifier", "aerobust", "AEClassifier"),
    ("aerobust.attacks.get", "aerobust.attacks", "get"),
    ("aerobust.attacks.FGSM", "aerobust.attacks", "FGSM"),
    ("aerobust.attacks.PGD", "aerobust.attacks", "PGD"),
    ("aerobust.attacks.CW", "aerobust.attacks", "CW"),
    ("aerobust.attacks.DeepFool", "aerobust.attacks", "DeepFool"),
    ("aerobust.attacks.APGD", "aerobust.attacks", "APGD"),
    ("aerobust.attacks.Square", "aerobust.attacks", "Square"),
    ("aerobust.evaluate", "aerobust", "evaluate"),
    ("aerobust.audit.audit", "aerobust.audit", "audit"),
    ("aerobust.bpda", "aerobust", "bpda"),
    ("aerobust.attacks.Execution", "aerobust.attacks", "Execution"),
]
RESULTS = [
    ("aerobust.attacks.AttackResult", "aerobust.attacks", "AttackResult"),
    ("aerobust.attacks.Evaluation", "aerobust.attacks", "Evaluation"),
    ("aerobust.audit.Audit", "aerobust.audit", "Audit"),
]

INTRO = """\
# Python API

Generated from the docstrings by `python docs/make_api.py`; `tests/test_docs.py` fails when
this page and the docstrings differ, and runs every example below.

Conventions:

- Images are float tensors (N, C, H, W) in [0,1] and labels int64 (N,). Any `nn.Module` that
  maps [0,1] images to logits can be the classifier; normalization belongs inside it.
- In Python, `eps` is in [0,1] units (`eps=20 / 255`), where the command line takes 0-255
  (`--eps 20`); an eps above 1 is refused with that hint.
- The examples assume `model` (a 10-class classifier of 28x28 grey images), `x` and `y`
  (8 such images and their labels) and `checkpoint` (a `model.pt` from `aerobust train`).
- The audit is imported as `from aerobust.audit import audit`: the function `audit` of the
  package `aerobust.audit` (documented below as `aerobust.audit.audit`).

How attacks run and why their defaults are what they are: [attacks.md](attacks.md) and
[design.md](design.md#attacks). The audit's ladder and verdict rules: [audit.md](audit.md).
"""

SECTION = re.compile(r"^(Args|Returns|Example):$")


def anchor(title: str) -> str:
    """The anchor a code host gives a heading (GitHub's rule)."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _code(text: str) -> str:
    """reStructuredText's ``literal`` as Markdown's `literal`."""
    return re.sub(r"``(.+?)``", r"`\1`", text)


def _annotation(value: Any) -> str:
    return value if isinstance(value, str) else inspect.formatannotation(value)


def signature(title: str, obj: Any) -> str:
    """``title(params) -> return``, one parameter a line when it does not fit in 88."""
    sig = inspect.signature(obj)
    params, star = [], False
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star:
            params.append("*")
            star = True
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        star = star or p.kind is p.VAR_POSITIONAL
        text = prefix + p.name
        if p.annotation is not p.empty:
            text += f": {_annotation(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {p.default!r}" if p.annotation is not p.empty else f"={p.default!r}"
        params.append(text)
    ret = ""
    if sig.return_annotation is not sig.empty and not inspect.isclass(obj):
        ret = f" -> {_annotation(sig.return_annotation)}"
    one_line = f"{title}({', '.join(params)}){ret}"
    if len(one_line) <= 88:
        return one_line
    return f"{title}(\n" + "".join(f"    {p},\n" for p in params) + f"){ret}"


def _sections(doc: str) -> tuple[list[str], dict[str, list[str]]]:
    """The docstring's text before its first section, and each section's lines."""
    body: list[str] = []
    sections: dict[str, list[str]] = {}
    current = body
    for line in doc.splitlines():
        match = SECTION.match(line)
        if match:
            current = sections.setdefault(match.group(1), [])
        else:
            current.append(line)
    return body, sections


def _args(lines: list[str]) -> list[str]:
    """``name: text`` items (continued on deeper lines) as a Markdown list."""
    items: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        item = re.match(r"^    (\S[^:]*): (.*)$", line)
        if item:
            names = ", ".join(f"`{n.strip()}`" for n in item.group(1).split(","))
            items.append(f"- {names}: {_code(item.group(2))}")
        else:
            items[-1] += " " + _code(line.strip())
    return items


def entry(title: str, obj: Any, fields: bool = False) -> str:
    doc = inspect.getdoc(obj) or ""
    body, sections = _sections(doc)
    out = [f"## `{title}`", ""]
    if not fields:  # a result is read, not built: its fields, not its constructor
        out += ["```python", signature(title, obj), "```", ""]
    out += [_code("\n".join(body).strip()), ""]
    if fields and dataclasses.is_dataclass(obj):
        out += ["Fields:", ""]
        out += [f"- `{f.name}`: `{_annotation(f.type)}`" for f in dataclasses.fields(obj)]
        out.append("")
    if "Args" in sections:
        out += ["**Arguments**", "", *_args(sections["Args"]), ""]
    if "Returns" in sections:
        text = " ".join(line.strip() for line in sections["Returns"] if line.strip())
        out += ["**Returns** " + _code(text), ""]
    if "Example" in sections:
        code = [line[4:] for line in sections["Example"] if line.strip()]
        out += ["**Example**", "", "```pycon", *code, "```", ""]
    return "\n".join(out)


def public(module: str, attr: str) -> Any:
    # importlib, not attribute access: ``aerobust.audit`` is the package whichever way
    # the top-level name is bound
    return getattr(importlib.import_module(module), attr)


def render() -> str:
    # headings in page order; a repeated anchor gets -1, -2, ... as on GitHub
    # (aerobust.audit.audit and aerobust.audit.Audit differ only in case)
    links: dict[str, str] = {}
    for title, _, _ in CALLABLES + RESULTS:
        base = anchor(title)
        repeats = sum(1 for a in links.values() if re.fullmatch(rf"{base}(-\d+)?", a))
        links[title] = f"{base}-{repeats}" if repeats else base
    toc = ["## Contents", ""]
    toc += [f"- [`{t}`](#{links[t]})" for t, _, _ in CALLABLES]
    toc += ["- Results: " + ", ".join(f"[`{t.rsplit('.', 1)[1]}`](#{links[t]})"
                                      for t, _, _ in RESULTS), ""]
    parts = [INTRO, "\n".join(toc)]
    parts += [entry(t, public(m, a)) for t, m, a in CALLABLES]
    parts += [entry(t, public(m, a), fields=True) for t, m, a in RESULTS]
    return "\n".join(parts).rstrip("\n") + "\n"


if __name__ == "__main__":
    PAGE.write_text(render())
    sys.stdout.write(f"wrote {PAGE}\n")
