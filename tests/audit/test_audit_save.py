"""``Audit.save``: an audit writes its own files (the CLI's ``--out`` only calls it)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from aerobust.audit import audit


def test_save_writes_the_record_and_both_pages(one_thread: None, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 1, 4, 4, generator=g), torch.randint(0, 3, (12,), generator=g)
    result = audit(model, x, y, 0.1, budget="quick", progress=False)
    about = {"dataset": "random", "classifier": "linear"}
    assert result.save(tmp_path / "out", title="Audit of a line", about=about) == tmp_path / "out"
    record = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert record == json.loads(json.dumps({**about, **result.to_dict()}))
    markdown = (tmp_path / "out" / "audit.md").read_text()
    html = (tmp_path / "out" / "audit.html").read_text()
    assert markdown.startswith("# Audit of a line") and result.verdict in markdown
    assert "Audit of a line" in html and result.verdict in html
    # every figure a page links to is there
    for name in ("audit.md", "audit.html"):
        for link in {part.split(")")[0] for part in (tmp_path / "out" / name).read_text()
                     .split("](")[1:] if part.split(")")[0].endswith(".png")}:
            assert (tmp_path / "out" / link).is_file(), link
