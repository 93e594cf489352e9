"""The report: built from rows that really came from every experiment, self-contained
HTML, verdicts that follow the numbers, "not run" where an experiment is missing, and
never a model trained or an attack run."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import torch

from aerobust.cli import main
from aerobust.errors import UserError
from aerobust.experiments import ExperimentConfig, Workspace, run_experiment
from aerobust.experiments.examples import write_examples
from aerobust.report import write_report
from aerobust.report.load import EXPERIMENTS
from aerobust.report.seeds import summary, versus_paper
from aerobust.report.verdicts import (
    AGREES,
    DISAGREES,
    INCONCLUSIVE,
    MIXED,
    adversarial,
    gradient,
    white_box,
)
from aerobust.training import RunStore

SETTINGS = dict(classifier_epochs=1, ae_epochs=1, n_eval=8, n_cw=4, cw_steps=5,
                cw_binary_steps=2, pgd_steps=2, deepfool_steps=3, masking_n=8,
                masking_pgd_steps=2, eps=(20, 80), eps_sweep=(0, 40), lambdas=(0.0, 1.0),
                gammas=(0, 2), audit_budget="quick", audit_l2_eps=(2.0,))
PART = "tiny"
PNG = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("# Reproduction report", "## Verdicts", "## Table 1", "## Table 2", "**(a)**",
            "**(b)**", "## Table 3", "## Table 4", "## Fig. 2", "## Fig. 4", "## Audit",
            "## Examples", "## Settings", "### Configuration", "### Trained runs", "### Time",
            "### Versions")
# Run in a fresh interpreter: the report must not even import the training or
# experiment code, and an attack run by accident fails loudly.
NO_TRAINING = """
import sys
import aerobust.attacks.base as base

def refuse(*args, **kwargs):
    raise AssertionError("the report ran an attack")

base.Attack.__call__ = refuse
from aerobust.report import write_report

write_report(sys.argv[1])
loaded = [m for m in sys.modules if m.startswith(("aerobust.training", "aerobust.experiments"))]
assert not loaded, loaded
"""


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2))


@pytest.fixture(scope="module")
def results(tiny_npz: str, shared_store: RunStore,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A reproduce folder as `aerobust reproduce` lays it out, every experiment's rows
    from run_experiment on tiny data; part.json and reproduce.json written here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ws = Workspace(ExperimentConfig(dataset=tiny_npz, **SETTINGS), shared_store, "cpu",
                   progress=False)
    root = tmp_path_factory.mktemp("reproduce")
    finished = {}
    for name in EXPERIMENTS:
        rows = run_experiment(name, ws, root / PART)
        finished[name] = {"seconds": 1.0, "rows": len(rows), "config_hash": ws.config.digest}
    write_examples(ws, root / PART, k=3)
    torch.set_num_threads(threads)
    prov = ws.provenance()
    runs = {name: {"arch": run.spec.arch, "kind": run.spec.kind, "epochs": run.spec.epochs,
                   "seed": run.spec.seed, "loss": run.spec.loss, "method": run.spec.method,
                   "adversarial": run.spec.adversarial, "metrics": run.metrics}
            for name, run in ws.runs.items()}
    _write_json(root / PART / "part.json", {
        **prov, "part": PART, "preset": "quick", "family": ws.family,
        "paper_dataset": ws.paper_dataset, "seed": ws.config.seed, "experiments": finished,
        "runs": runs})
    _write_json(root / "reproduce.json", {
        "preset": "quick", "command": "aerobust reproduce --out X", "parts": [PART],
        "experiments": list(EXPERIMENTS), "started": "2025-01-01T00:00:00+00:00",
        "finished": "2025-01-01T00:01:00+00:00", "seconds": 60.0,
        "versions": prov["versions"]})
    yield root


@pytest.fixture(scope="module")
def report(results: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of ``results``, written by a fresh interpreter that refuses attacks
    and must not import the training or experiment code."""
    out = tmp_path_factory.mktemp("report") / "out"
    shutil.copytree(results, out)
    done = subprocess.run([sys.executable, "-c", NO_TRAINING, str(out)], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


def _copy(results: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(results, out)
    return out


def _drop(out: Path, *experiments: str) -> None:
    """Make ``experiments`` unfinished in part.json, as a part that ran only some of them;
    their rows files stay, as an interrupted run or an older config leaves them, and the
    report must not show them."""
    meta = json.loads((out / PART / "part.json").read_text())
    for name in experiments:
        del meta["experiments"][name]
    _write_json(out / PART / "part.json", meta)


def _rows(results: Path, experiment: str) -> list[dict]:
    return json.loads((results / PART / f"{experiment}.json").read_text())["rows"]


def _verdict_line(md: str, claim: str) -> str:
    return next(line for line in md.splitlines() if line.startswith(f"| {claim}"))


def test_report_from_real_rows_has_every_section(report: Path, results: Path) -> None:
    md = (report / "report.md").read_text()
    for section in SECTIONS:
        assert section in md, section
    assert "not run" not in md
    assert "different data" in md  # tiny data: the paper's MNIST numbers for reference
    # our number, the paper's and the difference, in the paper's layout
    fgsm = next(r for r in _rows(results, "table1")
                if (r["variant"], r["attack"], r["eps"]) == ("C", "fgsm", 20))
    assert (f"| FGSM | 20 | {fgsm['accuracy']:.2f} | 69.94 | "
            f"{versus_paper(summary([fgsm]), 69.94)} |" in md)
    for claim in range(1, 7):
        line = _verdict_line(md, f"({claim})")
        assert any(f"| **{s}** |" in line for s in (AGREES, DISAGREES, MIXED, INCONCLUSIVE)
                   ), line
    for name in ("figure2_tiny", "figure4", "audit_tiny", "examples_tiny"):
        assert f"](report_files/{name}.png)" in md
        assert (report / "report_files" / f"{name}.png").read_bytes().startswith(PNG)
    assert "no reference points are drawn" in md
    audit = md[md.index("## Audit"):md.index("## Examples")]
    assert "In L2 (eps in the [0,1] pixel scale" in audit and "| L2 eps |" in audit
    l2 = [r for r in _rows(results, "audit") if r.get("norm") == "L2"]
    assert {r["variant"] for r in l2} == {"C", "AE-C"} and {r["eps"] for r in l2} == {2.0}
    assert all(r["audit"]["norm"] == "L2" for r in l2)
    assert not list(report.rglob(".*.tmp"))  # atomic writes leave no temp files


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_html_is_self_contained(report: Path) -> None:
    parser = _Tags()
    parser.feed((report / "report.html").read_text())
    tags = parser.tags
    links = [a[k] or "" for _, a in tags for k in ("src", "href") if k in a]
    assert links and not [u for u in links if u.startswith(("http:", "https:", "//"))]
    assert not [t for t, _ in tags if t in ("script", "link", "iframe")]
    images = [a["src"] or "" for t, a in tags if t == "img"]
    assert len(images) == len(list((report / "report_files").glob("*.png"))) == 4
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert ("td", {"class": "num"}) in tags  # numbers right-aligned


def test_missing_experiments_show_not_run(results: Path, tmp_path: Path) -> None:
    out = _copy(results, tmp_path)
    _drop(out, "figure2", "table3")
    manifest = json.loads((out / "reproduce.json").read_text())
    manifest["experiments"].remove("table3")  # as `--only` leaves it out
    _write_json(out / "reproduce.json", manifest)
    (out / PART / "examples.npz").unlink()
    paths = write_report(out)
    assert "figure2_tiny" not in paths and "examples_tiny" not in paths
    md = paths["md"].read_text()
    fig2 = md[md.index("## Fig. 2"):md.index("## Fig. 4")]
    assert "`tiny`: not run." in fig2
    assert "| **not run** |" in _verdict_line(md, "(3)")
    assert "not run (not requested)" in md[md.index("## Table 3"):md.index("## Table 4")]
    assert "no examples.npz" in md
    assert "| `tiny` |" in md and "| 5 of 7 |" in md
    assert "## Table 1" in md and "| **not run** |" not in _verdict_line(md, "(1)")


def _seeded(rows: list[dict], accuracy: dict[str, float]) -> list[dict]:
    """Three seeds of real Table 1 rows, each attack's accuracy set per variant with a
    small seed-to-seed spread (+-1 point)."""
    out = []
    for seed, jitter in enumerate((-1.0, 0.0, 1.0)):
        for r in rows:
            r = {**r, "seed": seed}
            if r["attack"] != "clean":
                r["accuracy"] = accuracy[r["variant"]] + jitter * (r["variant"] == "C")
            out.append(r)
    return out


def test_white_box_verdict_follows_the_numbers(results: Path, tmp_path: Path) -> None:
    """AE-C above C beyond the seeds' noise agrees, below it disagrees, and a difference
    the noise covers is inconclusive."""
    rows = _rows(results, "table1")
    assert white_box(_seeded(rows, {"C": 30.0, "AE-C": 60.0}), "mnist")[0] == AGREES
    swapped = _seeded(rows, {"C": 60.0, "AE-C": 30.0})
    status, text = white_box(swapped, "mnist")
    assert status == DISAGREES
    assert "above in 0 of 6 attack rows, below in 6, within noise in 0" in text
    assert white_box(_seeded(rows, {"C": 30.0, "AE-C": 30.5}), "mnist")[0] == INCONCLUSIVE
    out = _copy(results, tmp_path)
    _drop(out, *(e for e in EXPERIMENTS if e != "table1"))
    _write_json(out / PART / "table1.json", {"experiment": "table1", "rows": swapped})
    md = write_report(out)["md"].read_text()
    assert "| **disagrees** |" in _verdict_line(md, "(1)")
    table1 = md.split("## Table 1")[1].split("## Table 2")[0]
    assert "| FGSM | 20 | 60.00 ± 1.00 | 69.94 |" in table1  # mean +- std over the seeds
    assert "Mean ± std over 3 seeds" in table1


def test_one_seed_compares_point_by_point() -> None:
    """With one seed two models compare by McNemar on the images both saw."""
    c = {"variant": "C", "attack": "pgd", "eps": 20, "accuracy": 40.0, "n": 50,
         "points": list(range(20))}
    better = {**c, "variant": "AE-C", "accuracy": 70.0, "points": list(range(35))}
    assert white_box([c, better], "mnist")[0] == AGREES
    close = {**better, "accuracy": 42.0, "points": [*range(20), 49]}
    assert white_box([c, close], "mnist")[0] == INCONCLUSIVE


def test_direction_claims_follow_the_paper_dataset() -> None:
    """Table 4 and Fig. 4: the paper says opposite things for MNIST and CIFAR-10."""
    g = [{"variant": v, "target": "true", "gradient_amplitude": a, "paper": None}
         for v, a in (("C", 2e-3), ("AE-C", 1e-3))]
    assert gradient(g, "mnist")[0] == AGREES and gradient(g, "cifar10")[0] == DISAGREES
    accuracy = {"C": 20.0, "AE-C": 50.0, "advC": 60.0, "AE-advC": 70.0}
    f4 = [{"variant": v, "attack": "pgd", "eps": e, "seed": s,
           "accuracy": (a + s * (v in ("C", "advC"))) if e else 99.0}
          for v, a in accuracy.items() for e in (0, 40) for s in range(3)]
    assert adversarial(f4, "mnist")[0] == AGREES  # gap +30 -> +10: narrows, stays above
    assert adversarial(f4, "cifar10")[0] == DISAGREES  # CIFAR-10: AE-advC should be lower


def test_two_parts_share_figure4(results: Path, tmp_path: Path) -> None:
    """The paper preset's layout: MNIST and CIFAR-10 parts, Fig. 4 as one 1 x 4 figure."""
    out = _copy(results, tmp_path)
    _drop(out, "figure2")
    (out / PART / "examples.npz").unlink()
    single = write_report(out)["figure4"].read_bytes()
    shutil.copytree(out / PART, out / "cifar10")
    meta = json.loads((out / "cifar10" / "part.json").read_text())
    _write_json(out / "cifar10" / "part.json", {**meta, "paper_dataset": "cifar10"})
    _write_json(out / "reproduce.json", {**json.loads((out / "reproduce.json").read_text()),
                                         "parts": [PART, "cifar10"]})
    paths = write_report(out)
    md = paths["md"].read_text()
    assert sum(line.startswith("|  | `cifar10` |") for line in md.splitlines()) == 6
    assert "higher with the AE on CIFAR-10" in md and "lower with the AE on MNIST" in md

    def width(png: bytes) -> int:
        return int.from_bytes(png[16:20], "big")

    assert width(paths["figure4"].read_bytes()) == pytest.approx(2 * width(single), rel=0.05)


def test_report_command_writes_the_pages_the_rows_say(results: Path, tmp_path: Path,
                                                     capsys) -> None:
    out = _copy(results, tmp_path)
    assert main(["report", str(out), "--json"]) == 0
    paths = {k: Path(v) for k, v in json.loads(capsys.readouterr().out).items()}
    assert paths["md"] == out / "report.md" and paths["html"] == out / "report.html"
    md = paths["md"].read_text()
    # Table 1's clean accuracies of C and AE-C (one seed), as the rows file has them
    clean = {r["variant"]: r["accuracy"] for r in _rows(results, "table1")
             if r["attack"] == "clean"}
    cells = next(line for line in md.splitlines() if line.startswith("| clean | 0 |")).split(
        " | ")
    assert (cells[2], cells[5]) == (f"{clean['C']:.2f}", f"{clean['AE-C']:.2f}")


@pytest.mark.parametrize("damage,message", [
    ("absent", "no such folder"),
    ("no manifest", "no reproduce.json"),
    ("corrupt manifest", "reproduce.json: not readable JSON"),
])
def test_report_command_errors_are_one_line(results: Path, tmp_path: Path, capsys,
                                            damage: str, message: str) -> None:
    out = _copy(results, tmp_path)
    if damage == "absent":
        out = tmp_path / "nowhere"
    elif damage == "no manifest":
        (out / "reproduce.json").unlink()
    else:
        (out / "reproduce.json").write_text("{")
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and str(out) in err


def test_no_manifest_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no reproduce\.json: run `aerobust reproduce --out"
                       ) as caught:
        write_report(tmp_path)
    assert "\n" not in str(caught.value) and str(tmp_path) in str(caught.value)


def test_trained_runs_say_what_tells_them_apart() -> None:
    """Table 3's runs differ only in lambda or gamma, advC only in its PGD: the runs table
    must show those, or a reader cannot tell which run is which."""
    from aerobust.report import settings

    assert settings._training({"loss": "ce", "method": "regularization", "lam": 4.0}) == \
        "ce, regularization, \N{GREEK SMALL LETTER LAMDA}=4"
    assert settings._training({"loss": "ce", "method": "alternating", "gamma": 2}) == \
        "ce, alternating, \N{GREEK SMALL LETTER GAMMA}=2"
    assert settings._training({"loss": "temperature", "loss_kwargs": {"temperature": 2.5}}) == \
        "temperature (temperature 2.5)"
    adversarial = {"eps": 0.3, "steps": 40, "step_size": 0.01, "ramp_epochs": 5}
    assert settings._training({"loss": "ce", "adversarial": adversarial}) == (
        "ce, PGD adversarial (eps 76.5/255, 40 steps of 2.55/255, ramped up over 5 epochs)")
    assert settings._short("sha256:" + "ab" * 32) == "sha256:" + "ab" * 8 + "..."
    assert settings._short("md5:abc") == "md5:abc"


def test_every_table_shows_the_seeds_spread(results: Path, tmp_path: Path) -> None:
    """Rows of three seeds: every table's cells read mean ± std, the audit adds a table
    over the seeds, and the figures still draw."""
    out = _copy(results, tmp_path)
    for name in EXPERIMENTS:
        data = json.loads((out / PART / f"{name}.json").read_text())
        data["rows"] = [{**r, "seed": seed} for seed in range(3) for r in data["rows"]]
        _write_json(out / PART / f"{name}.json", data)
    paths = write_report(out)
    md = paths["md"].read_text()
    for start, end in (("## Table 1", "## Table 2"), ("## Table 2", "## Table 3"),
                       ("## Table 3", "## Table 4"), ("## Table 4", "## Fig. 2")):
        section = md[md.index(start):md.index(end)]
        assert "Mean ± std over 3 seeds" in section, start
        cells = [line for line in section.splitlines()[1:]
                 if line.startswith("|") and "---" not in line and "ours" not in line
                 and "gradient of" not in line]
        assert cells and all(" ± " in line for line in cells), start
    audit = md[md.index("## Audit"):md.index("## Examples")]
    assert "Over the 3 seeds" in audit and "| verdicts |" in audit
    assert paths["figure2_tiny"].read_bytes().startswith(PNG)


def test_time_says_which_experiments_a_ray_session_finished(results: Path,
                                                            tmp_path: Path) -> None:
    """On Ray an experiment's seconds run from the cluster run's start to its last cell;
    the report says which experiments that applies to, by the sessions' commands."""
    out = _copy(results, tmp_path)
    meta = json.loads((out / PART / "part.json").read_text())
    for name, entry in meta["experiments"].items():
        entry["finished"] = ("2025-01-01T00:00:30+00:00" if name in ("table2", "audit")
                             else "2025-01-01T00:00:05+00:00")
    _write_json(out / PART / "part.json", meta)
    manifest = json.loads((out / "reproduce.json").read_text())
    manifest["sessions"] = [
        {"command": "aerobust reproduce --jobs 2", "started": "2025-01-01T00:00:00+00:00",
         "finished": None, "seconds": None},
        {"command": "aerobust reproduce --backend ray", "finished": "2025-01-01T00:01:00+00:00",
         "started": "2025-01-01T00:00:10+00:00", "seconds": 50.0}]
    _write_json(out / "reproduce.json", manifest)
    md = write_report(out)["md"].read_text()
    assert "Finished on a Ray cluster (`--backend ray`): table2, audit;" in md
    manifest["sessions"].pop()
    _write_json(out / "reproduce.json", manifest)
    assert "Ray cluster" not in write_report(out)["md"].read_text()
