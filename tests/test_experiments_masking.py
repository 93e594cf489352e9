"""The gradient-masking experiments (Table 2, Fig. 2, Table 4) end to end on tiny data,
and the substitutes they attack from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

from aerobust.cli import main
from aerobust.experiments import ExperimentConfig, Workspace, run_experiment
from aerobust.experiments.recipes import substitute, variant
from aerobust.report import write_experiment
from aerobust.training import RunStore

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = dict(classifier_epochs=1, ae_epochs=1, masking_n=12, masking_pgd_steps=2,
                eps=(20, 80), eps_sweep=(0, 40))


def _ws(tiny_npz: str, shared_store: RunStore, **kw) -> Workspace:
    return Workspace(ExperimentConfig(dataset=tiny_npz, **{**SETTINGS, **kw}), shared_store, "cpu",
                     progress=False)


def _separate(a: nn.Module, b: nn.Module) -> bool:
    ptrs = {p.data_ptr() for p in a.parameters()}
    return a is not b and not ptrs & {p.data_ptr() for p in b.parameters()}


def test_substitutes_are_separate_models(tiny_npz: str, shared_store: RunStore) -> None:
    ws = _ws(tiny_npz, shared_store)
    ctx = ws.context
    for kind in ("different", "same"):
        for name in ("C", "AE-C"):
            target_spec = variant(ws.setup, name, 0)
            sub_spec = substitute(ws.setup, kind, target_spec, 0)
            target, sub = ctx.model(target_spec), ctx.model(sub_spec)
            assert _separate(sub, target)
            runs, sub_runs = ctx.runs_of(target_spec), ctx.runs_of(sub_spec, "substitute_")
            assert sub_runs["substitute_classifier_run"] != runs["classifier_run"]
            arch = ws.runs[sub_runs["substitute_classifier_run"]].spec.arch
            assert arch == ("lenet-substitute" if kind == "different" else "lenet5")
            if name == "AE-C":
                assert _separate(sub.autoencoder, target.autoencoder)
                assert sub_runs["substitute_autoencoder_run"] != runs["autoencoder_run"]


def test_substitute_on_target_labels_and_own_epochs(tiny_npz: str,
                                                    shared_store: RunStore) -> None:
    ws = _ws(tiny_npz, shared_store, substitute_labels="target", substitute_epochs=2)
    target = variant(ws.setup, "C", 0)
    sub_runs = ws.context.runs_of(substitute(ws.setup, "same", target, 0), "substitute_")
    runs = ws.context.runs_of(target)
    spec = ws.runs[sub_runs["substitute_classifier_run"]].spec
    assert spec.data_checksum != ws.dataset.checksum
    assert spec.epochs == 2 and ws.runs[runs["classifier_run"]].spec.epochs == 1
    # the row records the resolved value, never "the default"
    assert _ws(tiny_npz, shared_store).config.substitute_epochs == 1


def test_table2_end_to_end(tmp_path: Path, tiny_npz: str, shared_store: RunStore) -> None:
    ws = _ws(tiny_npz, shared_store)
    seen: list[dict] = []
    ws.on_cell = seen.append
    rows = run_experiment("table2", ws, tmp_path / "out")
    paths = write_experiment(tmp_path / "out", "table2")
    assert len(rows) == len(seen) == len(ws.cells("table2"))
    assert len(rows) == 2 * 2 * 2 * 2
    by = {(r["substitute"], r["variant"], r["attack"], r["eps"]): r for r in rows}
    assert by[("same", "AE-C", "pgd", 80)]["paper"] == 71.90
    assert by[("different", "C", "fgsm", 20)]["paper"] == 96.53
    for r in rows:
        assert r["n"] == 12 and 0 <= r["accuracy"] <= r["clean_accuracy"]
        assert 0 <= r["substitute_accuracy"] <= r["substitute_clean_accuracy"]
        if r["attack"] == "pgd":
            assert r["params"]["keep"] == "last" and r["params"]["steps"] == 2
        assert r["seed"] == 0 and len(r["points"]) == round(r["accuracy"] * 12 / 100)
    md = Path(paths["md"]).read_text()
    assert "Substitute of another architecture" in md and "| PGD | 80 |" in md
    again = run_experiment("table2", ws, tmp_path / "out")
    assert [r["cell_seconds"] for r in again] == [r["cell_seconds"] for r in rows]


def test_figure2_end_to_end(tmp_path: Path, tiny_npz: str, shared_store: RunStore) -> None:
    ws = _ws(tiny_npz, shared_store)
    seen: list[dict] = []
    ws.on_cell = seen.append
    rows = run_experiment("figure2", ws, tmp_path / "out")
    paths = write_experiment(tmp_path / "out", "figure2")
    assert len(rows) == len(seen) == len(ws.cells("figure2"))
    assert len(rows) == 2 * 6 * 2 * 2
    by = {(r["box"], r["variant"], r["attack"], r["eps"]): r for r in rows}
    for (box, name, attack, eps), r in by.items():
        if eps == 0:  # no perturbation: the clean accuracy
            assert r["accuracy"] == r["clean_accuracy"]
        assert r["accuracy"] <= by[(box, name, attack, 0)]["accuracy"]
    # C, C+T and C+GCE are attacked from one CE substitute, crafted once
    subs = {by[("black", v, "pgd", 40)]["substitute_classifier_run"]
            for v in ("C", "C+T", "C+GCE")}
    assert len(subs) == 1
    assert by[("black", "C", "pgd", 40)]["substitute_accuracy"] == \
        by[("black", "C+GCE", "pgd", 40)]["substitute_accuracy"]
    specs = {v: ws.runs[by[("white", v, "fgsm", 40)]["classifier_run"]].spec
             for v in ("C", "C+T", "(AE-C)+GCE")}
    assert specs["C"].loss == "ce"
    assert specs["C+T"].loss_kwargs == {"temperature": 2.5}
    assert specs["(AE-C)+GCE"].loss == "gce"
    png = paths["figure2_out"].read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    md = Path(paths["md"]).read_text()
    assert "Fig. 2" in md and "figure2_out.png" in md


def test_table4_and_command_line(tmp_path: Path, tiny_npz: str, shared_store: RunStore,
                                 capsys) -> None:
    code = main(["experiment", "table4", "--dataset", tiny_npz, "--store", str(shared_store.root),
                 "--out", str(tmp_path), "--classifier-epochs", "1", "--ae-epochs", "1",
                 "--quiet", "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    by = {(r["variant"], r["target"]): r for r in rows}
    ws = _ws(tiny_npz, shared_store)
    assert len(rows) == 6 == len(ws.cells("table4"))
    assert all(r["gradient_amplitude"] > 0 for r in rows)
    assert by[("C", "true")]["paper"] == 8.9e-4 and by[("C", "loss")]["paper"] is None
    assert "AE-C / C" in (tmp_path / "table4.md").read_text()
    assert main(["experiment", "table2", "--dataset", tiny_npz, "--transfer-keep", "best"]) == 2
    assert main(["experiment", "figure2", "--dataset", tiny_npz, "--eps-sweep", "0,x"]) == 2
