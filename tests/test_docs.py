"""The docs cannot drift from the code: every relative link and anchor resolves, the
README's Python example runs, docs/api.md is what its generator writes from the
docstrings now, and every example in it runs."""

from __future__ import annotations

import doctest
import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import nn

import aerobust
from aerobust.models import build_model
from aerobust.models.checkpoint import save_checkpoint
from aerobust.training import RunStore, default_spec

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]  # not docs/results/**
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def _make_api() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_api", ROOT / "docs" / "make_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lowercase, punctuation stripped,
    spaces to hyphens, a repeated one suffixed -1, -2, ..."""
    text = FENCE.sub("", page.read_text())
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.M):
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
        base = re.sub(r"[^\w\- ]", "", plain.lower()).replace(" ", "-")
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page: Path) -> list[str]:
    """Link targets outside code blocks and inline code."""
    text = FENCE.sub("", page.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)
    return [a or b for a, b in LINK.findall(text)]


def test_the_anchor_rule_is_githubs(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("# Set-up\n## `eps-monotone`\n## CW at the reference's step size\n"
                    "## Adversarial training (Fig. 4)\n## Set-up\n```\n# not a heading\n```\n")
    assert anchors(page) == {"set-up", "eps-monotone", "cw-at-the-references-step-size",
                             "adversarial-training-fig-4", "set-up-1"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and (dest.suffix != ".md" or fragment not in anchors(dest)):
            broken.append(f"{target}: no heading #{fragment}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_readme_stays_short() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    assert not [n for n, line in enumerate(lines, 1) if len(line) > 200]
    # .ci/run calls the README's test command
    assert "python -m pytest -q" in (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet5 trained one epoch on the bundled digits, as `aerobust train` would."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dataset = aerobust.load_dataset("digits")
        store = RunStore(tmp_path_factory.mktemp("runs"))
        run = store.train(default_spec("lenet5", dataset, epochs=1), dataset, "cpu",
                          progress=False)
    finally:
        torch.set_num_threads(threads)
    return Path(run.checkpoint)


def test_readme_python_example_runs(digits_checkpoint: Path, one_thread: None) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", readme, re.M | re.S)
    assert len(blocks) == 1
    code = blocks[0]
    # the two placeholders a reader fills in: their run folder, and fewer points here
    assert code.count('"RUN/model.pt"') == 1 and code.count("n = 300 ") == 1
    code = code.replace('"RUN/model.pt"', repr(str(digits_checkpoint)))
    code = code.replace("n = 300 ", "n = 24 ")
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), scope)

    # computed here without evaluate or the audit: the same model, the same PGD
    defended, x, y = scope["defended"], scope["x"], scope["y"]
    assert len(x) == 24
    with torch.no_grad():
        clean = defended(x).argmax(dim=1) == y
    x_adv = aerobust.attacks.PGD(eps=20 / 255, steps=40)(defended, x, y).x_adv
    with torch.no_grad():
        robust = clean & (defended(x_adv).argmax(dim=1) == y)
    result, audited = scope["result"], scope["audited"]
    assert result.clean_accuracy == pytest.approx(clean.double().mean().item())
    assert result.robust_accuracy == pytest.approx(robust.double().mean().item())
    assert result.clean_accuracy > 0.3  # one epoch on digits, far above chance
    assert audited.n == 24
    assert audited.clean_accuracy == pytest.approx(result.clean_accuracy)
    assert audited.robust_accuracy <= audited.baseline_robust_accuracy


def test_audit_checks_link_to_their_section(one_thread: None) -> None:
    """Each sanity check's text names its section of docs/audit.md, and each probe has
    one too."""
    from aerobust.audit import audit

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(20, 1, 4, 4, generator=g), torch.randint(0, 3, (20,), generator=g)
    torch.manual_seed(0)
    found = audit(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), x, y, 0.1, budget="quick")
    sections = anchors(ROOT / "docs" / "audit.md")
    assert {c.name for c in found.checks} == {"eps-monotone", "large-eps",
                                              "black-box-not-stronger", "more-steps-converged"}
    for check in found.checks:
        assert check.detail.endswith(f"see docs/audit.md#{check.name}")
        assert check.name in sections
    assert {p.name for p in found.probes} <= sections


def test_api_page_is_generated_from_the_docstrings() -> None:
    make_api = _make_api()
    assert (ROOT / "docs" / "api.md").read_text() == make_api.render(), (
        "docs/api.md differs from the docstrings: run python docs/make_api.py")
    for title, module, attr in make_api.CALLABLES:  # every public callable documented
        doc = make_api.public(module, attr).__doc__ or ""
        assert "Args:" in doc and "Returns:" in doc and "Example:" in doc, title


def test_api_examples_run(tmp_path: Path, one_thread: None) -> None:
    """Every example in docs/api.md, run as doctests with the names the page assumes."""
    make_api = _make_api()
    torch.manual_seed(0)
    model = build_model("lenet5")
    model.eval()
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, model, "lenet5", {})
    g = torch.Generator().manual_seed(0)
    names = {"aerobust": aerobust, "torch": torch, "nn": nn, "model": model,
             "x": torch.rand(8, 1, 28, 28, generator=g),
             "y": torch.randint(0, 10, (8,), generator=g), "checkpoint": checkpoint}
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    finder = doctest.DocTestFinder(recurse=False)
    for title, module, attr in make_api.CALLABLES:
        tests = finder.find(make_api.public(module, attr), title, globs=dict(names))
        assert sum(len(t.examples) for t in tests) >= 2, f"{title}: no example"
        for test in tests:
            runner.run(test)
    assert runner.failures == 0, "an example in docs/api.md failed (see the output above)"
