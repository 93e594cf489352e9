"""``aerobust reproduce``: presets, every experiment and the report in one command,
resuming after SIGKILL with the numbers of an uninterrupted run, the output lock."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aerobust.cli import EXPERIMENT_NAMES, main
from aerobust.errors import UserError
from aerobust.experiments.presets import PRESETS, parts
from aerobust.reproduce import numbers
from tests.conftest import process_tree, reproduce_args

pytestmark = pytest.mark.usefixtures("one_thread")

def _subprocess(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "aerobust.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_presets() -> None:
    assert [p.dataset for p in parts("paper")] == ["mnist", "cifar10"]
    assert parts("quick")[0].dataset == "digits"
    mine = parts("mnist", "npz:/data/My MNIST.npz")
    assert (mine[0].name, mine[0].dataset) == ("My-MNIST", "npz:/data/My MNIST.npz")
    assert mine[0].settings == PRESETS["mnist"][0].settings
    with pytest.raises(UserError, match="runs 2"):
        parts("paper", "npz:x.npz")
    with pytest.raises(UserError, match="unknown preset"):
        parts("fast")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_npz: str) -> Path:
    """One uninterrupted run in a subprocess (as a user runs it), fresh store."""
    root = tmp_path_factory.mktemp("reference")
    proc = _subprocess(reproduce_args(tiny_npz, root / "out", root / "store"))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return root / "out"


def test_reproduce_runs_every_experiment_and_writes_the_report(reference: Path) -> None:
    manifest = json.loads((reference / "reproduce.json").read_text())
    assert manifest["preset"] == "mnist" and manifest["finished"]
    assert manifest["parts"] == ["d"]  # the npz file's stem
    part = json.loads((reference / "d" / "part.json").read_text())
    assert set(part["experiments"]) == set(EXPERIMENT_NAMES)
    assert part["config"]["n_eval"] == 12 and part["data_checksum"].startswith("sha256:")
    assert any(r["arch"] == "conv-ae" for r in part["runs"].values())
    for name in EXPERIMENT_NAMES:
        assert (reference / "d" / f"{name}.json").is_file()
        assert part["experiments"][name]["rows"] == len(
            json.loads((reference / "d" / f"{name}.json").read_text())["rows"])
    assert (reference / "d" / "examples.npz").is_file()
    assert (reference / "report.md").is_file() and (reference / "report.html").is_file()
    assert "part d" in (reference / "reproduce.log").read_text()


def test_killed_run_resumes_with_the_uninterrupted_numbers(
        tmp_path: Path, tiny_npz: str, reference: Path) -> None:
    args = reproduce_args(tiny_npz, tmp_path / "out", tmp_path / "store")
    proc = _subprocess(args)
    cells = tmp_path / "out" / "d" / "cells"
    deadline = time.monotonic() + 300
    while sum(1 for _ in cells.glob("*/*.json")) < 10:  # mid-run: some cells written
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = sum(1 for _ in cells.glob("*/*.json"))
    assert not (tmp_path / "out" / "report.md").exists()
    proc = _subprocess(args)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert sum(1 for _ in cells.glob("*/*.json")) > done_before
    assert numbers(tmp_path / "out") == numbers(reference)
    # The wall time covers what it can: the killed session is kept, marked, not counted.
    manifest = json.loads((tmp_path / "out" / "reproduce.json").read_text())
    killed, resumed = manifest["sessions"]
    assert killed["finished"] is None and resumed["finished"] == manifest["finished"]
    assert manifest["seconds"] == resumed["seconds"] and manifest["started"] == killed["started"]
    assert "over 2 invocations of `reproduce` (see Settings; 1 interrupted" in (
        tmp_path / "out" / "report.md").read_text()


def test_killed_run_with_jobs_leaves_no_worker_behind(tmp_path: Path, tiny_npz: str) -> None:
    """SIGKILL cannot be caught: the worker processes end with the run by themselves,
    instead of computing on beside the next one."""
    proc = _subprocess(reproduce_args(tiny_npz, tmp_path / "out", tmp_path / "store",
                                      "--only", "table1,table2,audit", "--jobs", "2"))
    cells = tmp_path / "out" / "d" / "cells"
    deadline = time.monotonic() + 300
    while sum(1 for _ in cells.glob("*/*.json")) < 3:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    workers = process_tree().get(proc.pid, [])
    assert len(workers) >= 3  # the manager and two workers
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, "worker processes outlived the killed run"
        time.sleep(0.1)


def test_second_run_reuses_everything(tmp_path: Path, tiny_npz: str, reference: Path) -> None:
    """Nothing left to do: no cell is recomputed and no model trained."""
    store = tmp_path / "store"
    out = tmp_path / "out"
    assert main(reproduce_args(tiny_npz, out, store, "--only", "table1,table4")) == 0
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("d/cells/*/*.json")}
    start = time.perf_counter()
    assert main(reproduce_args(tiny_npz, out, store, "--only", "table1,table4")) == 0
    assert time.perf_counter() - start < 20
    assert {p: p.stat().st_mtime_ns for p in out.glob("d/cells/*/*.json")} == stamps
    assert "table1: already finished, reused" in (out / "reproduce.log").read_text()
    # The no-op rerun adds its seconds to the first run's instead of replacing them.
    manifest = json.loads((out / "reproduce.json").read_text())
    first, second = manifest["sessions"]
    assert manifest["seconds"] == pytest.approx(first["seconds"] + second["seconds"])
    assert first["seconds"] > second["seconds"]
    ref = numbers(reference)
    assert numbers(out) == {k: ref[k] for k in ("d/table1.json", "d/table4.json")}
    # Other settings are other work: their sessions do not count.
    assert main(reproduce_args(tiny_npz, out, store, "--only", "table4", "--seed", "1")) == 0
    assert len(json.loads((out / "reproduce.json").read_text())["sessions"]) == 1


def test_jobs_run_experiments_in_parallel_with_the_same_numbers(
        tmp_path: Path, tiny_npz: str, reference: Path) -> None:
    only = "table1,table3,table4"
    assert main(reproduce_args(tiny_npz, tmp_path / "out", tmp_path / "store", "--only", only,
                         "--jobs", "2")) == 0
    ref = numbers(reference)
    assert numbers(tmp_path / "out") == {f"d/{e}.json": ref[f"d/{e}.json"]
                                          for e in only.split(",")}


def test_a_second_run_on_the_same_folder_is_refused(tmp_path: Path, tiny_npz: str,
                                                    capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        assert main(reproduce_args(tiny_npz, out, tmp_path / "store")) == 2
    assert "another `aerobust reproduce` is writing here" in capsys.readouterr().err
    assert not (out / "reproduce.json").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--only", "table9"], "--only 'table9': expected names from table1"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--eps", "300"], "outside 0..255"),
])
def test_bad_options_exit_2_with_one_line(tmp_path: Path, tiny_npz: str, capsys,
                                          extra: list[str], message: str) -> None:
    assert main(reproduce_args(tiny_npz, tmp_path / "out", tmp_path / "store", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_data_says_how_to_get_it(tmp_path: Path, capsys) -> None:
    code = main(["reproduce", "--preset", "mnist", "--data-dir", str(tmp_path),
                 "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2
    assert "aerobust data download mnist" in capsys.readouterr().err


def test_plan_lists_every_cell_the_run_computes(tmp_path: Path, tiny_npz: str,
                                                reference: Path, capsys) -> None:
    """The plan, made before anything runs, is the run: same cells, same keys."""
    capsys.readouterr()
    assert main([*reproduce_args(tiny_npz, tmp_path / "fresh", tmp_path / "store"), "--plan",
                 "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    cells = planned["cells"]
    assert planned["count"] == len(cells) and not any(c["cached"] for c in cells)
    assert not (tmp_path / "fresh").exists() and not (tmp_path / "store").exists()
    computed = {p.stem for p in reference.glob("d/cells/*/*.json")}
    assert {c["key"] for c in cells} == computed and len(cells) == len(computed)
    pgd = next(c for c in cells if c["coords"].get("attack") == "pgd"
               and c["experiment"] == "table1")
    # fully resolved: the attack's own defaults, the seed, the images, the code version
    assert pgd["params"]["attack"]["params"]["steps"] == 2
    assert pgd["params"]["attack"]["params"]["seed"] == 0 and pgd["params"]["n"] == 12
    assert set(pgd["code"]) == {"train:lenet5", "attack:pgd", "metrics", "compute"}
    assert main([*reproduce_args(tiny_npz, reference, tmp_path / "store"), "--plan"]) == 0
    assert f"total: {len(cells)} cells, {len(cells)} cached" in capsys.readouterr().out


def test_a_changed_attack_recomputes_exactly_its_cells(
        tmp_path: Path, tiny_npz: str, reference: Path, monkeypatch) -> None:
    import shutil

    from aerobust.experiments import spec

    out = tmp_path / "out"
    shutil.copytree(reference, out)
    store = reference.parent / "store"
    before = {p.stem: json.loads(p.read_text()) for p in out.glob("d/cells/*/*.json")}
    real = spec.code_version
    monkeypatch.setattr(spec, "code_version",
                        lambda c: real(c) + ("-changed" if c == "attack:cw" else ""))
    assert main(reproduce_args(tiny_npz, out, store)) == 0
    after = {p.stem: json.loads(p.read_text()) for p in out.glob("d/cells/*/*.json")}
    new = [after[k] for k in set(after) - set(before)]
    # table1's CW rows of C and AE-C: the only cells that use CW
    assert sorted((r["experiment"], r["variant"], r["attack"]) for r in new) == [
        ("table1", "AE-C", "cw"), ("table1", "C", "cw")]
    assert all(r["code"]["attack:cw"].endswith("-changed") for r in new)
    rows = json.loads((out / "d" / "table1.json").read_text())["rows"]
    assert {r["key"] for r in rows if r["attack"] == "cw"} == {r["key"] for r in new}


def test_seeds_give_every_table_its_spread(tmp_path: Path, tiny_npz: str) -> None:
    """--seeds 2: every model trained and attacked twice; tables show mean +- std, the
    figure draws a band, the paired comparisons use the two seeds."""
    out = tmp_path / "out"
    assert main(reproduce_args(tiny_npz, out, tmp_path / "store", "--only", "table1,figure4",
                         "--seeds", "2")) == 0
    rows = json.loads((out / "d" / "table1.json").read_text())["rows"]
    assert sorted({r["seed"] for r in rows}) == [0, 1] and len(rows) == 2 * 2 * 7
    runs = {r["seed"]: r["classifier_run"] for r in rows if r["variant"] == "C"}
    assert runs[0] != runs[1]
    md = (out / "report.md").read_text()
    table1 = md.split("## Table 1")[1].split("## Table 2")[0]
    assert "Mean ± std over 2 seeds" in table1
    assert all(" ± " in line for line in table1.splitlines() if line.startswith("| FGSM"))
    assert "AE-C minus C" in table1 and "95% intervals are Student's t" in table1
    part = json.loads((out / "d" / "part.json").read_text())
    assert part["seeds"] == 2


def test_ray_backend_without_ray_says_how_to_install(tmp_path: Path, tiny_npz: str,
                                                      monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    out = tmp_path / "out"
    assert main(reproduce_args(tiny_npz, out, tmp_path / "store", "--backend", "ray")) == 2
    assert "pip install 'aerobust[ray]'" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written
    assert main(["audit", "--classifier", str(tmp_path), "--dataset", tiny_npz, "--eps", "8",
                 "--backend", "ray"]) == 2
    assert "pip install 'aerobust[ray]'" in capsys.readouterr().err


def test_ray_backend_refuses_local_jobs(tiny_npz: str, tmp_path: Path, capsys) -> None:
    assert main(reproduce_args(tiny_npz, tmp_path / "out", tmp_path / "store", "--backend", "ray",
                         "--jobs", "2")) == 2
    assert "--jobs is for --backend local" in capsys.readouterr().err


def test_ray_options_need_the_ray_backend(tiny_npz: str, tmp_path: Path, capsys) -> None:
    assert main(reproduce_args(tiny_npz, tmp_path / "out", tmp_path / "store",
                         "--address", "127.0.0.1:6379")) == 2
    assert "--address needs --backend ray" in capsys.readouterr().err


@pytest.mark.parametrize(("address", "message"), [
    ("127.0.0.1:1", "nothing answers there"), ("head-node", "expected HOST:PORT")])
def test_a_wrong_cluster_address_is_one_line_and_writes_nothing(
        tiny_npz: str, tmp_path: Path, capsys, address: str, message: str) -> None:
    pytest.importorskip("ray", reason="needs `pip install 'aerobust[ray]'`")
    out = tmp_path / "out"
    assert main(reproduce_args(tiny_npz, out, tmp_path / "store", "--backend", "ray",
                               "--address", address)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_the_costliest_cells_may_run_fewer_seeds_and_the_report_says_so(
        tmp_path: Path, tiny_npz: str) -> None:
    out = tmp_path / "out"
    assert main(reproduce_args(tiny_npz, out, tmp_path / "store", "--only", "table1",
                               "--seeds", "2", "--cw-seeds", "1")) == 0
    rows = json.loads((out / "d" / "table1.json").read_text())["rows"]
    assert sorted((r["variant"], r["seed"]) for r in rows if r["attack"] == "cw") == [
        ("AE-C", 0), ("C", 0)]
    assert len(rows) == 2 * 2 * 7 - 2  # every other cell ran both seeds
    md = (out / "report.md").read_text()
    assert "Fewer seeds: `d`: CW cells (Table 1) ran seed 0 of 0-1 (`cw_seeds` 1)" in md
    table1 = md.split("## Table 1")[1].split("## Table 2")[0]
    cw_line = next(line for line in table1.splitlines() if line.startswith("| CW"))
    assert "(n=1)" in cw_line


def test_a_partial_report_shows_the_finished_cells_of_a_run_not_done(
        tmp_path: Path, tiny_npz: str, reference: Path, capsys) -> None:
    out = tmp_path / "out"
    args = reproduce_args(tiny_npz, out, reference.parent / "store", "--only", "table1")
    assert main([*args, "--partial"]) == 2  # nothing to report yet: one line
    assert "no run here yet" in capsys.readouterr().err
    shutil.copytree(reference, out)
    # make it a run stopped halfway: the experiment unfinished, some cells still to come
    part = json.loads((out / "d" / "part.json").read_text())
    del part["experiments"]["table1"]
    (out / "d" / "part.json").write_text(json.dumps(part))
    cells = sorted((out / "d" / "cells" / "table1").glob("*.json"))
    gone = [json.loads(c.read_text()) for c in cells[:3]]
    for c in cells[:3]:
        c.unlink()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("d/cells/*/*.json")}
    assert main([*args, "--partial"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("d/cells/*/*.json")} == stamps
    done = json.loads((out / "d" / "table1.partial.json").read_text())
    assert (len(done["rows"]), done["cells"]) == (len(cells) - 3, len(cells))
    assert not {r["key"] for r in gone} & {r["key"] for r in done["rows"]}
    md = (out / "report.md").read_text()
    assert f"`d/table1` {len(cells) - 3} of {len(cells)}" in md
    assert f"Partial: `d` has {len(cells) - 3} of {len(cells)} cells so far." in md
    assert (out / "d" / "table1.partial.csv").is_file()
    # other settings than the run's: refused, nothing written
    assert main([*args, "--seed", "1", "--partial"]) == 2
    assert "other settings" in capsys.readouterr().err
    # once the run finishes, the report is the finished one again
    assert main(args) == 0
    md = (out / "report.md").read_text()
    assert "Partial" not in md
