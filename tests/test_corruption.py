"""Corrupt results are recomputed, never fatal: a cell file, a run-store file or a rows
file that does not parse, or holds another key's result, is named in one warning line,
moved aside (kept, not deleted) and recomputed to the numbers of an uncorrupted run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from aerobust.cli import main
from aerobust.reproduce import numbers
from aerobust.training import RunStore, default_spec
from tests.conftest import reproduce_args

pytestmark = pytest.mark.usefixtures("one_thread")


def _aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))


def _warning(err: str, path: Path) -> None:
    """One warning line, naming the file."""
    lines = [line for line in err.splitlines() if "warning" in line]
    assert len(lines) == 1 and str(path) in lines[0] and "moved to" in lines[0], err


def _weights(run) -> dict[str, torch.Tensor]:
    return run.load().state_dict()


@pytest.mark.parametrize("damage", ["zero-byte model.pt", "truncated metrics.json",
                                    "run.json of another spec", "model.pt of another spec"])
def test_a_corrupt_run_file_is_set_aside_and_the_run_trained_again(
        tmp_path: Path, tiny_dataset, capsys, damage: str) -> None:
    store = RunStore(tmp_path)
    spec = default_spec("lenet5", tiny_dataset, epochs=1, batch_size=32)
    other = store.train(spec.replace(seed=1), tiny_dataset, "cpu", progress=False)
    first = store.train(spec, tiny_dataset, "cpu", progress=False)
    weights = _weights(first)
    name, _, _ = damage.partition(" of ")
    target = first.path / name.split()[-1]
    original = target.read_bytes()
    if damage.startswith("zero-byte"):
        target.write_bytes(b"")
    elif damage.startswith("truncated"):
        target.write_bytes(original[: len(original) // 2])
    else:
        shutil.copyfile(other.path / target.name, target)
    capsys.readouterr()
    assert store.finished(spec) is None
    _warning(capsys.readouterr().err, target)
    assert len(_aside(target)) == 1 and not target.exists()
    again = store.train(spec, tiny_dataset, "cpu", progress=False)
    assert again.metrics["test_accuracy"] == first.metrics["test_accuracy"]
    redone = _weights(again)
    assert all(torch.equal(weights[k], redone[k]) for k in weights)
    assert store.finished(spec) is not None and capsys.readouterr().err == ""


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, tiny_npz: str) -> tuple[Path, Path]:
    """One uncorrupted ``reproduce --only table1`` (its folder and store)."""
    root = tmp_path_factory.mktemp("finished")
    assert main(reproduce_args(tiny_npz, root / "out", root / "store", "--only",
                               "table1")) == 0
    return root / "out", root / "store"


def test_reproduce_recomputes_corrupt_cells_to_the_same_numbers(
        tmp_path: Path, tiny_npz: str, finished: tuple[Path, Path], capsys) -> None:
    reference, store = finished
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    cells = sorted((out / "d" / "cells" / "table1").glob("*.json"))
    truncated, foreign = cells[0], cells[1]
    truncated.write_text(truncated.read_text()[:40])
    foreign.write_text(cells[2].read_text())  # another cell's row under this key
    capsys.readouterr()
    assert main(reproduce_args(tiny_npz, out, store, "--only", "table1")) == 0
    err = capsys.readouterr().err
    for path in (truncated, foreign):
        assert sum(str(path) in line for line in err.splitlines()) == 1, err
        assert len(_aside(path)) == 1
        assert json.loads(path.read_text())["key"] == path.stem
    assert numbers(out) == numbers(reference)


@pytest.mark.parametrize("name", ["table1.json", "part.json", "examples.npz"])
def test_corrupt_bookkeeping_is_redone(tmp_path: Path, tiny_npz: str,
                                       finished: tuple[Path, Path], capsys, name: str) -> None:
    """A rows file, part.json or examples.npz that does not parse: set aside, rewritten."""
    reference, store = finished
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    path = out / "d" / name
    path.write_bytes(path.read_bytes()[:30])
    capsys.readouterr()
    assert main(reproduce_args(tiny_npz, out, store, "--only", "table1")) == 0
    _warning(capsys.readouterr().err, path)
    assert len(_aside(path)) == 1 and path.is_file()
    assert numbers(out) == numbers(reference)


def test_report_on_a_folder_with_a_corrupt_rows_file_names_what_is_missing(
        tmp_path: Path, finished: tuple[Path, Path], capsys) -> None:
    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    rows = out / "d" / "table1.json"
    rows.write_text("{\"rows\": [")
    (out / "report.md").unlink()
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and str(rows) in err
    report = (out / "report.md").read_text()
    assert "not run (table1.json: not readable JSON" in report
    assert rows.read_text() == "{\"rows\": ["  # the report only reads
