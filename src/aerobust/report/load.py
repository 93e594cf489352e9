"""Reading a ``reproduce --out`` folder: the manifest, each part's metadata, the rows of
every finished experiment and the example images. Nothing here computes a number."""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from aerobust.errors import UserError
from aerobust.names import ALL_EXPERIMENTS, EXPERIMENT_NAMES

Row = dict[str, Any]
T = TypeVar("T")

EXPERIMENTS = EXPERIMENT_NAMES
EXAMPLE_ARRAYS = ("clean", "reconstruction", "adv_c", "adv_ae_c", "label", "pred_c_clean",
                  "pred_c_adv", "pred_ae_c_adv", "attack")
PAPER_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10"}


@dataclass(frozen=True)
class Part:
    """One dataset's results. ``rows`` holds finished experiments only; ``requested``
    is None when the manifest does not say which experiments were asked for."""

    name: str
    meta: dict[str, Any]
    rows: dict[str, list[Row]]
    examples: dict[str, np.ndarray] | None
    requested: tuple[str, ...] | None
    # the experiments whose rows file is there but unreadable, with what is wrong
    unreadable: dict[str, str] = field(default_factory=dict)
    # unfinished experiments shown from their finished cells (``reproduce --partial``):
    # (cells finished, cells planned)
    partial: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def paper_dataset(self) -> str:
        return self.meta.get("paper_dataset") or "mnist"

    @property
    def paper_name(self) -> str:
        return PAPER_NAMES.get(self.paper_dataset, self.paper_dataset)

    def missing(self, experiment: str) -> str:
        """Why ``experiment`` has no rows, in words that always contain "not run"."""
        if not self.meta:
            return "not run (no part.json: this part never started)"
        if self.requested is not None and experiment not in self.requested:
            return "not run (not requested)"
        if experiment in self.unreadable:
            return (f"not run ({experiment}.json: {self.unreadable[experiment]}; the same "
                    "`aerobust reproduce` again recomputes what it lacks)")
        return "not run"

    def paper_note(self, paper_dataset: str | None = None) -> str:
        """What the paper columns are, said once per table; Table 3 is MNIST-only."""
        reference = paper_dataset or self.paper_dataset
        dataset = self.meta.get("dataset", self.name)
        note = f"Paper columns: the paper's {PAPER_NAMES.get(reference, reference)} numbers"
        return note + ("." if dataset == reference else f"; different data (`{dataset}`).")


@dataclass(frozen=True)
class Results:
    root: Path
    manifest: dict[str, Any]
    parts: list[Part]


def _read_json(path: Path) -> dict[str, Any] | None:
    """The file's object, or None when absent; a corrupt file is the user's to fix."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def _read_examples(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            lacking = [k for k in EXAMPLE_ARRAYS if k not in npz.files]
            if lacking:
                raise UserError(f"{path}: lacks the array(s) {', '.join(lacking)}")
            return {k: npz[k] for k in EXAMPLE_ARRAYS}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: not a readable npz file ({e})") from None


def read_rows(path: Path) -> dict[str, Any]:
    """An experiment's rows file; a missing one is the user's to make."""
    data = _read_json(path)
    if data is None:
        raise UserError(f"{path}: no such rows file")
    if not isinstance(data.get("rows"), list):
        raise UserError(f"{path}: has no list of rows")
    return data


def _readable(read: Callable[[Path], T], path: Path) -> tuple[T | None, str | None]:
    """``read(path)``, or, where the file is corrupt, None and what is wrong with it, said
    in one warning line: the report shows the rest (a results file is never fatal)."""
    try:
        return read(path), None
    except UserError as exc:
        problem = str(exc).removeprefix(f"{path}: ")
    print(f"aerobust: warning: {path}: {problem}; reported as missing", file=sys.stderr)
    return None, problem


def _finished_rows(part_dir: Path, meta: dict[str, Any]
                   ) -> tuple[dict[str, list[Row]], dict[str, str], dict[str, tuple[int, int]]]:
    """Rows of the experiments part.json lists as finished, and those whose rows file
    does not parse. A rows file it does not list is from an interrupted run or an older
    config, so it is left out; so is a partial one (``reproduce --partial``) written under
    another config than part.json's. The partial ones come with (finished, planned)."""
    rows, unreadable, partial = {}, {}, {}
    for name in ALL_EXPERIMENTS:
        if name not in meta.get("experiments", {}):
            data, _ = _readable(_read_json, part_dir / f"{name}.partial.json")
            if (data is not None and data.get("rows")
                    and data.get("config_hash") == meta.get("config_hash")):
                rows[name] = data["rows"]
                partial[name] = (len(data["rows"]), int(data.get("cells", 0)))
            continue
        data, problem = _readable(_read_json, part_dir / f"{name}.json")
        if problem is not None:
            unreadable[name] = problem
        elif data is not None and data.get("rows"):
            rows[name] = data["rows"]
    return rows, unreadable, partial


def load_results(out_dir: str | Path) -> Results:
    root = Path(out_dir)
    manifest = _read_json(root / "reproduce.json")
    if manifest is None:
        raise UserError(f"{root}: no reproduce.json: run `aerobust reproduce --out {root}` "
                        "first")
    names = manifest.get("parts") or sorted(p.parent.name for p in root.glob("*/part.json"))
    requested = manifest.get("experiments")
    parts = []
    for name in names:
        part_dir = root / name
        meta = _readable(_read_json, part_dir / "part.json")[0] or {}
        rows, unreadable, partial = _finished_rows(part_dir, meta)
        parts.append(Part(name=name, meta=meta, rows=rows,
                          examples=_readable(_read_examples, part_dir / "examples.npz")[0],
                          requested=None if requested is None else tuple(requested),
                          unreadable=unreadable, partial=partial))
    return Results(root=root, manifest=manifest, parts=parts)


def index(rows: list[Row], *keys: str) -> dict[tuple[Any, ...], Row]:
    """Rows by their cell keys, in row order (dicts keep insertion order)."""
    return {tuple(r.get(k) for k in keys): r for r in rows}
