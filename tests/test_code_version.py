"""A cell's code version covers what its numbers depend on and no more: edits to modules a
cell imports change its key; edits anywhere else, comments and docstrings keep it."""

import shutil
from pathlib import Path

import pytest

import aerobust
from aerobust.code_version import closure
from aerobust.experiments.spec import Cell, Model, Net, component_digest

COMPONENTS = ("train:lenet5", "train:conv-ae", "train:latent-classifier", "attack:pgd",
              "attack:cw", "attack:deepfool", "attack:fgsm", "audit", "transfer", "metrics",
              "compute")


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A copy of the package's sources to edit."""
    root = tmp_path / "aerobust"
    shutil.copytree(Path(aerobust.__file__).parent, root,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _digests(root: Path) -> dict[str, str]:
    return {c: component_digest(c, root) for c in COMPONENTS}


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_the_copy_has_the_installed_digests(package: Path) -> None:
    assert _digests(package) == {c: component_digest(c) for c in COMPONENTS}


def test_an_unrelated_model_file_keeps_every_key(package: Path) -> None:
    before = _digests(package)
    _append(package / "models" / "vgg.py", "\n\ndef wider(n: int) -> int:\n    return 2 * n\n")
    (package / "models" / "newdefense.py").write_text("import torch\nX = 1\n")
    registry = package / "models" / "registry.py"  # a table: adding an entry is no change
    registry.write_text(registry.read_text().replace(
        '"conv-ae": ("autoencoder", ConvAE),',
        '"conv-ae": ("autoencoder", ConvAE),\n    "conv-ae-2": ("autoencoder", ConvAE),'))
    assert "conv-ae-2" in registry.read_text()
    assert _digests(package) == before


def test_comments_and_docstrings_keep_every_key(package: Path) -> None:
    before = _digests(package)
    pgd = package / "attacks" / "pgd.py"
    text = pgd.read_text()
    text = text.replace('"""', '"""Reworded. ', 1).replace("\n", "  # a comment\n", 3)
    pgd.write_text(text)
    assert _digests(package) == before


def test_a_file_the_cell_imports_changes_exactly_its_keys(package: Path) -> None:
    before = _digests(package)
    _append(package / "attacks" / "cw.py", "\n\nSCALE = 2\n")
    after = _digests(package)
    assert [c for c in COMPONENTS if after[c] != before[c]] == ["attack:cw"]

    # LeNet5's own module: its training changes, not the AE's nor the attacks'
    _append(package / "models" / "lenet.py", "\n\nWIDTH = 6\n")
    changed = {c for c in COMPONENTS if _digests(package)[c] != after[c]}
    assert changed == {"train:lenet5"}


def test_a_training_default_changes_every_training_key(package: Path) -> None:
    """The optimizer's defaults are not in a cell's spec but make its models."""
    before = _digests(package)
    defaults = package / "training" / "defaults.py"
    text = defaults.read_text()
    assert "lr=1e-3" in text
    defaults.write_text(text.replace("lr=1e-3", "lr=2e-3", 1))
    after = _digests(package)
    assert {c for c in COMPONENTS if after[c] != before[c]} == {
        "train:lenet5", "train:conv-ae", "train:latent-classifier"}


def test_a_shared_module_changes_every_component_that_imports_it(package: Path) -> None:
    before = _digests(package)
    _append(package / "attacks" / "losses.py", "\n\nEPS = 1e-12\n")
    after = _digests(package)
    changed = {c for c in COMPONENTS if after[c] != before[c]}
    # every attack and the trainer (adversarial training runs PGD) import the losses
    assert {"attack:pgd", "attack:cw", "attack:fgsm", "audit", "train:lenet5"} <= changed
    assert "compute" not in changed


def test_imports_resolve_to_the_defining_module() -> None:
    modules = closure(["aerobust.attacks.cw"])
    assert "aerobust.attacks.cw" in modules and "aerobust.attacks.base" in modules
    assert not any(m.startswith("aerobust.models") for m in modules)
    assert "aerobust.attacks" not in modules and "aerobust" not in modules  # tables
    trainer = closure(["aerobust.training.trainer"])
    assert "aerobust.models.vgg" not in trainer and "aerobust.models.resnet" not in trainer


def test_a_cell_names_the_training_of_every_net_it_uses() -> None:
    c = Net("lenet5", 0, 1)
    ae = Net("conv-ae", 0, 1)
    sub = Net("lenet-substitute", 1, 1, labels_from=Model(c, ae))
    cell = Cell("table2", {}, "transfer", Model(c, ae),
                {"attack": {"name": "fgsm", "params": {}}}, substitute=Model(sub))
    assert cell.components() == ["train:conv-ae", "train:lenet-substitute", "train:lenet5",
                                 "attack:fgsm", "transfer", "compute"]


def test_how_a_report_reads_keeps_the_audit_key(package: Path) -> None:
    # ``Audit.save`` writes the report; the audit's numbers do not come from it
    before = _digests(package)
    _append(package / "report" / "markdown.py", "\n\nRULE = '---'\n")
    _append(package / "audit" / "save.py", "\n\nSUFFIX = '.md'\n")
    assert _digests(package) == before
    _append(package / "audit" / "ladder.py", "\n\nRUNGS = 2\n")
    assert {c for c in COMPONENTS if _digests(package)[c] != before[c]} == {"audit"}
