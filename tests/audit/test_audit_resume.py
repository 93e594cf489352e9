"""A resumable audit: killed at any moment, the same call finishes with the numbers of
an uninterrupted one and recomputes no finished rung; a state from anything else is
refused, one that does not parse is set aside."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from aerobust.audit import audit, state
from aerobust.cli import main
from aerobust.errors import UserError
from tests.audit.test_audit_api import _data, _model

pytestmark = pytest.mark.usefixtures("one_thread")


def _untimed(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "seconds": None,
            "rungs": [{**r, "seconds": None} for r in row["rungs"]]}


def _cli(data: str, run: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "aerobust.cli", "audit", "--classifier", run, "--dataset",
            data, "--eps", "51", "--budget", "quick", "--n", "24", "--out", str(out),
            "--quiet"]


def test_sigkilled_audit_resumes_with_the_uninterrupted_numbers(trained) -> None:
    data, run, tmp = trained
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert main(_cli(data, run, tmp / "whole")[3:]) == 0  # uninterrupted, in this process
    out = tmp / "killed"
    proc = subprocess.Popen(_cli(data, run, out), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    steps = out / "audit-state"
    deadline = time.monotonic() + 300
    while not any(steps.glob("0*.json")):  # the first rung has finished, the rest has not
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "audit.json").exists()
    before = {p.stem: json.loads(p.read_text())["payload"] for p in steps.glob("0*.json")}
    resumed = subprocess.run(_cli(data, run, out), env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {len(before)} finished step(s)" in resumed.stdout
    row = json.loads((out / "audit.json").read_text())
    assert _untimed(row) == _untimed(json.loads((tmp / "whole" / "audit.json").read_text()))
    # a finished rung was loaded, not run again: its row is the killed run's, seconds too
    for step, payload in before.items():
        assert row["rungs"][int(step[:2])] == payload["row"]
    assert len(row["rungs"]) > len(before)


def test_a_state_from_anything_else_is_refused(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _data()
    audit(_model(), x, y, 0.1, budget="quick", state=tmp_path)
    with pytest.raises(UserError, match="other settings") as err:
        audit(_model(), x, y, 0.2, budget="quick", state=tmp_path)
    assert "\n" not in str(err.value)
    other = _model()
    with torch.no_grad():
        other[1].bias += 1e-3
    with pytest.raises(UserError, match="another model"):
        audit(other, x, y, 0.1, budget="quick", state=tmp_path)
    with pytest.raises(UserError, match="other points"):
        audit(_model(), x.flip(0), y.flip(0), 0.1, budget="quick", state=tmp_path)
    monkeypatch.setattr(state, "code_digest", lambda: "0.1.0+changed")
    with pytest.raises(UserError, match="another code version"):
        audit(_model(), x, y, 0.1, budget="quick", state=tmp_path)


def test_the_cli_refuses_another_models_state_in_one_line(trained, capsys,
                                                          tmp_path: Path) -> None:
    data, run, _ = trained
    argv = ["audit", "--classifier", run, "--dataset", data, "--eps", "51", "--budget",
            "quick", "--n", "12", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv[:-1], "--seed", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and len(err.strip().splitlines()) == 1


def test_a_state_file_that_does_not_parse_is_set_aside_and_recomputed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    x, y = _data()
    first = audit(_model(), x, y, 0.1, budget="quick", state=tmp_path)
    broken = tmp_path / "01-apgd-ce.json"
    broken.write_text(broken.read_text()[:100])  # a torn file
    with caplog.at_level(logging.WARNING, logger="aerobust.audit"):
        again = audit(_model(), x, y, 0.1, budget="quick", state=tmp_path)
    assert len(caplog.records) == 1 and "does not parse" in caplog.records[0].getMessage()
    assert (tmp_path / "01-apgd-ce.json.unreadable").exists() and broken.exists()
    assert "01-apgd-ce" not in again.resumed and "00-pgd-ce" in again.resumed
    assert _untimed(again.to_dict()) == _untimed(first.to_dict())
