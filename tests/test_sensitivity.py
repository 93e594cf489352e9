"""The sensitivity experiment: the verdict rules on made-up numbers, its plan, and a
tiny ``reproduce --only sensitivity`` through to the report's "Gaps to the paper"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aerobust.cli import main
from aerobust.experiments import ExperimentConfig, Workspace, sensitivity
from aerobust.experiments.sensitivity import DEEPFOOL_IMPLEMENTATIONS, SITES
from aerobust.report.gaps import (
    EXPLAINED,
    NO_GAP,
    NOT_EXPLAINED,
    PARTLY,
    gaps,
    gaps_blocks,
    judge,
    main_run,
)
from aerobust.report.load import Part
from aerobust.report.markdown import render_markdown
from aerobust.report.seeds import Summary
from tests.conftest import reproduce_args

pytestmark = pytest.mark.usefixtures("one_thread")

DEFAULT = Summary(70.0, None, 1, 65.0, 75.0)  # the paper says 30: 35 points outside


def _cell(lo: float, hi: float) -> Summary:
    return Summary((lo + hi) / 2, None, 1, lo, hi)


def test_a_choice_whose_interval_holds_the_papers_value_explains_the_gap() -> None:
    verdict = judge(30.0, DEFAULT, [("steps: 7", _cell(45, 55)), ("step size", _cell(28, 36)),
                                    ("cap: 3", _cell(25, 31))])
    assert verdict.outcome == EXPLAINED
    assert verdict.choices == ("step size", "cap: 3") and verdict.left == 0


def test_the_closest_choice_partly_explains_and_says_the_distance_left() -> None:
    verdict = judge(30.0, DEFAULT, [("far", _cell(60, 68)), ("near", _cell(42, 50))])
    assert verdict.outcome == PARTLY
    assert verdict.choices == ("near",) and verdict.left == pytest.approx(12.0)
    assert "near" in verdict.text() and "12.00 left" in verdict.text()


def test_no_choice_closer_than_the_defaults_leaves_the_gap_unexplained() -> None:
    verdict = judge(30.0, DEFAULT, [("further", _cell(72, 80))])
    assert verdict.outcome == NOT_EXPLAINED and verdict.gap == pytest.approx(-35.0)
    assert judge(30.0, DEFAULT, []).outcome == NOT_EXPLAINED


def test_a_paper_value_within_the_threshold_is_no_gap() -> None:
    assert judge(61.0, DEFAULT, [("x", _cell(28, 36))]).outcome == NO_GAP  # 4 points out
    assert judge(59.0, DEFAULT, [("x", _cell(55, 60))]).outcome == EXPLAINED  # 6 out


def test_the_plan_lists_every_site_choice_and_table3_on_more_seeds() -> None:
    ws = Workspace(ExperimentConfig(dataset="digits", n_eval=20, n_cw=10))
    cells = ws.cells("sensitivity")
    keys = {c.key(ws.dataset.checksum) for c in cells}
    assert len(keys) == len(cells)  # no cell planned twice
    found = {(c.coords["site"], c.coords["axis"], c.coords["choice"], c.coords["variant"])
             for c in cells}
    for site in SITES:  # the defaults on both variants, to judge the claim
        assert {(site.name, "default", "as the preset", v) for v in ("C", "AE-C")} <= found
    labels = {(c.coords["site"], c.coords["choice"]) for c in cells}
    for expected in [("t1-pgd-20", "eps/4"), ("t1-pgd-20", "off"), ("t1-pgd-20", "margin"),
                     ("t1-pgd-20", "LeNet5 of 1998 (tanh, average pooling)"),
                     ("t1-deepfool", "3"), ("t1-deepfool", "authors' reference"),
                     ("t1-deepfool", "none, clipped to [0,1]"),
                     ("t1-cw", "1"), ("t1-fgsm-80", "off"),
                     ("t2a-pgd-80", "first"), ("t4-g", "logit, l2, adversarial")]:
        assert expected in labels, expected
    # PGD's 40 steps are the preset's: planned once, as the defaults
    assert ("t1-pgd-20", "40") not in labels
    # CW, hours per cell at the paper's size, tries only its own choices; what a failed
    # search returns moves no number (docs/design.md), so it is not a cell
    assert {c.coords["axis"] for c in cells if c.coords["site"] == "t1-cw"} == {
        "default", "CW steps", "CW learning rate", "CW binary-search steps"}
    # the era's DeepFools run with the parameters read in their code
    for impl in DEEPFOOL_IMPLEMENTATIONS:
        made = next(c for c in cells if c.coords["choice"] == impl.label
                    and c.coords["variant"] == "AE-C")
        assert {k: made.params["attack"]["params"][k] for k in impl.attack} == impl.attack
    # no AE trained twice as long: hours the budget does not hold
    assert not any(c.model.autoencoder and c.model.autoencoder.epochs > ws.config.ae_epochs
                   for c in cells)
    cap = next(c for c in cells if c.coords["site"] == "t1-deepfool"
               and c.coords["choice"] == "3" and c.coords["variant"] == "AE-C")
    assert cap.params["attack"]["params"]["steps"] == 3
    linear = next(c for c in cells if c.coords["choice"] == "none, clipped to [0,1]")
    assert linear.model.autoencoder.arch == "conv-ae-linear"
    assert linear.model.classifier == next(
        c for c in cells if c.coords["site"] == linear.coords["site"]
        and c.coords["axis"] == "default" and c.coords["variant"] == "AE-C").model.classifier
    assert all(c.params["n"] == 10 for c in cells if c.coords["site"] == "t1-cw")
    t3 = [c for c in cells if c.coords["site"].startswith("t3-")]
    assert {c.coords["seed"] for c in t3} == {0}  # the run's seeds: --seeds 3 for more
    three = Workspace(ExperimentConfig(dataset="digits", n_eval=20, n_cw=10, seeds=3))
    t3 = [c for c in three.cells("sensitivity") if c.coords["site"].startswith("t3-")]
    assert {c.coords["seed"] for c in t3} == {0, 1, 2}


def test_reproduce_only_sensitivity_writes_the_gaps_section(
    tiny_npz: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One site per task (attack, transfer, G readings) and Table 3 on two seeds: every
    # path at a fraction of the time (the plan test covers every site).
    kept = [s for s in SITES if s.name in ("t1-fgsm-80", "t2a-fgsm-80", "t4-g")]
    monkeypatch.setattr(sensitivity, "SITES", tuple(kept))
    out, store = tmp_path / "out", tmp_path / "store"
    args = reproduce_args(tiny_npz, out, store, "--only", "sensitivity", "--seeds", "2")
    assert main(args) == 0
    rows = json.loads((out / "d" / "sensitivity.json").read_text())["rows"]
    assert {r["site"] for r in rows} == {s.name for s in kept} | {"t3-fgsm-20", "t3-pgd-20"}
    assert {r["seed"] for r in rows if r["site"].startswith("t3-")} == {0, 1}
    md = (out / "report.md").read_text()
    gaps = md[md.index("## Gaps to the paper"):]
    assert "| t1-fgsm-80 | AE-C | 50.24 |" in gaps and "| t4-g | ratio | 4.83 |" in gaps
    assert "### Table 3 over seeds" in gaps and "on 2 seeds" in gaps
    for table in ("table1", "table2", "table3", "table4"):
        assert (out / "report_files" / f"gaps_{table}_d.png").is_file()
    before = {p: p.stat().st_mtime_ns for p in (out / "d" / "cells").rglob("*.json")}
    assert main(args) == 0  # resumed: every cell read back, none computed again
    assert {p: p.stat().st_mtime_ns for p in (out / "d" / "cells").rglob("*.json")} == before


def _row(axis: str, choice: str, variant: str, accuracy: float) -> dict:
    """A made-up sweep row at Table 1's PGD 20/255 site, on 1000 images."""
    robust = round(accuracy * 10)
    return {"site": "t1-pgd-20", "table": "table1", "attack": "pgd", "eps": 20.0,
            "gaps": ["C"], "axis": axis, "choice": choice, "variant": variant, "seed": 0,
            "paper": {"C": 30.63, "AE-C": 71.24}[variant], "accuracy": accuracy, "n": 1000,
            "points": list(range(robust))}


def test_the_section_judges_a_made_up_gap_and_rechecks_the_claim_under_its_choice() -> None:
    rows = [_row("default", "as the preset", "C", 76.0), _row("default", "as the preset",
                                                              "AE-C", 90.0),
            _row("PGD step size", "0.01", "C", 31.0), _row("PGD step size", "0.01", "AE-C",
                                                           70.0),
            _row("PGD steps", "7", "C", 80.0), _row("PGD steps", "7", "AE-C", 91.0)]
    main = [{"variant": "C", "attack": "pgd", "eps": 20.0, "seed": s, "accuracy": a,
             "n": 1000} for s, a in ((0, 76.0), (1, 72.0), (2, 80.0))]
    rows[2]["source"] = rows[3]["source"] = "a library 1.0: step_size=0.01"
    part = Part("mnist", {}, {"sensitivity": rows, "table1": main}, None, None)
    [found] = gaps(rows)
    assert found.verdict.outcome == EXPLAINED and found.verdict.choices == (
        "PGD step size: 0.01",)
    assert main_run(part, found).mean == pytest.approx(76.0)
    md = render_markdown(gaps_blocks(part))
    assert "| t1-pgd-20 | C | 30.63 | 76.00 [66.06, 85.94]: gap |" in md
    # The claim under the explaining choice: AE-C 39 points above C, paired on the points.
    assert "| t1-pgd-20 | PGD step size: 0.01 | AE-C - C: +39.00" in md
    assert md.count("| **holds** |") == 2  # at the defaults and under the choice
    assert md.count("| PGD step size: 0.01 | a library 1.0: step_size=0.01 |") == 1
