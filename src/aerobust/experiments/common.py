"""What every experiment shares: its configuration, the models it trains on demand
through the run store, result cells cached one file each, and the output files."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aerobust import atomic
from aerobust.audit.ladder import BUDGETS
from aerobust.data import Dataset, load_dataset
from aerobust.device import resolve_device
from aerobust.errors import UserError
from aerobust.models import AEClassifier
from aerobust.provenance import library_versions
from aerobust.training import Run, RunStore, data_family, default_spec

Row = dict[str, Any]

DEFAULT_CLASSIFIER = {"digits": "lenet5", "mnist": "lenet5", "cifar": "vgg16"}
# (binary-search steps, iterations) for CW where the config names none: the small
# bundled data gets DESIGN.md's quick setting so it runs in minutes on a CPU.
DEFAULT_CW = {"digits": (5, 100), "mnist": (9, 1000), "cifar": (9, 1000)}
PAPER_DATASET = {"digits": "mnist", "mnist": "mnist", "cifar": "cifar10"}


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything besides code that an experiment's numbers depend on; recorded and
    hashed into every result row, so a changed setting never reuses a stale cell."""

    dataset: str = "digits"
    data_dir: str | None = None
    classifier: str | None = None  # None: lenet5 for grey data, vgg16 for colour
    classifier_epochs: int | None = None  # None: the data family's default
    ae_epochs: int | None = None
    eps: tuple[float, ...] | None = None  # 0-255 units; None: the paper's for the family
    n_eval: int | None = None  # FGSM, PGD, DeepFool; None: the whole test set
    n_cw: int = 1000
    cw_steps: int | None = None  # None: 100 on digits, 1000 elsewhere (DESIGN.md)
    cw_binary_steps: int | None = None  # None: 5 on digits, 9 elsewhere
    pgd_steps: int = 40
    pgd_restarts: int = 1
    deepfool_steps: int = 50
    batch_size: int = 256
    seed: int = 0
    # Gradient-masking checks (Table 2, Fig. 2): substitutes train from seed + 1.
    substitute_labels: str = "true"  # "target": trained on the target's predictions
    substitute_epochs: int | None = None  # None: as many as the target models
    transfer_keep: str = "last"  # PGD iterate transferred: the final one (see README)
    temperature: float = 2.5  # C+T: logits / T in the training loss only
    gce_alpha: float = 1 / 3  # C+GCE: guiding exponent
    eps_sweep: tuple[float, ...] | None = None  # Fig. 2; None: DESIGN.md's for the family
    masking_n: int | None = None  # Table 2, Fig. 2 test images; None: 100 on digits, else n_eval
    masking_pgd_steps: int | None = None  # Table 2, Fig. 2; None: 10 on digits, else pgd_steps
    # Robust features (Table 3, Fig. 4).
    lambdas: tuple[float, ...] = (0.0, 1.0, 4.0)  # Table 3(a): weights of Lrec
    gammas: tuple[int, ...] = (0, 1, 2)  # Table 3(b): reconstruction steps per CE step
    sweep_attack: str = "pgd"  # Fig. 4's attack over the eps sweep
    # The paper, audited (experiment "audit").
    audit_budget: str | None = None  # None: quick on digits, standard elsewhere
    audit_n: int | None = None  # None: 100 on digits, else 1000; never above n_eval

    def __post_init__(self) -> None:
        for name in ("n_cw", "cw_steps", "cw_binary_steps", "pgd_steps", "pgd_restarts",
                     "deepfool_steps", "batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_eval is not None and self.n_eval < 1:
            raise UserError(f"n_eval must be at least 1, got {self.n_eval}")
        for e in (*(self.eps or ()), *(self.eps_sweep or ())):
            if not 0 <= e <= 255:
                raise UserError(f"epsilon {e} is outside 0..255 (pixel units)")
        for name in ("masking_n", "masking_pgd_steps", "substitute_epochs", "audit_n"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if any(v < 0 for v in self.lambdas) or any(
                g < 0 or g != int(g) for g in self.gammas):
            raise UserError(f"lambdas must be >= 0 and gammas whole numbers >= 0, got "
                            f"{self.lambdas} and {self.gammas}")
        if self.sweep_attack not in ("fgsm", "pgd"):
            raise UserError(f"sweep_attack must be fgsm or pgd, got {self.sweep_attack!r}")
        if self.audit_budget is not None and self.audit_budget not in BUDGETS:
            raise UserError(f"audit_budget must be one of {', '.join(BUDGETS)}, got "
                            f"{self.audit_budget!r}")
        if self.substitute_labels not in ("true", "target"):
            raise UserError(f"substitute_labels must be true or target, "
                            f"got {self.substitute_labels!r}")
        if self.transfer_keep not in ("first", "last"):
            raise UserError(f"transfer_keep must be first or last, got {self.transfer_keep!r}")
        if not self.temperature > 0 or not self.gce_alpha >= 0:
            raise UserError(f"temperature must be > 0 and gce_alpha >= 0, got "
                            f"{self.temperature} and {self.gce_alpha}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Workspace:
    """The loaded dataset plus the models an experiment asks for, each trained once
    through the run store and shared between experiments."""

    def __init__(self, config: ExperimentConfig, store: RunStore | None = None,
                 device: str | torch.device = "auto", progress: bool = True) -> None:
        self.config = config
        self.dataset: Dataset = load_dataset(config.dataset, config.data_dir)
        self.family = data_family(self.dataset)
        self.paper_dataset = PAPER_DATASET[self.family]
        self.store = store or RunStore()
        self.device = resolve_device(device)
        self.progress = progress
        self.runs: dict[str, Run] = {}
        # called with each finished cell's row, cached or fresh: drives reproduce's
        # overall progress bar
        self.on_cell: Callable[[Row], None] | None = None

    @property
    def cw_settings(self) -> tuple[int, int]:
        """(binary-search steps, iterations per step) for CW."""
        binary, steps = DEFAULT_CW[self.family]
        return (self.config.cw_binary_steps or binary, self.config.cw_steps or steps)

    @property
    def classifier_arch(self) -> str:
        return self.config.classifier or DEFAULT_CLASSIFIER[self.family]

    def train(self, arch: str, seed: int | None = None, dataset: Dataset | None = None,
              **overrides: Any) -> Run:
        """The finished run of ``arch`` (trained now if needed) on ``dataset``: the
        workspace's own by default, or a variant of it such as relabelled training data."""
        dataset = self.dataset if dataset is None else dataset
        kind_epochs = (self.config.ae_epochs if arch == "conv-ae"
                       else self.config.classifier_epochs)
        overrides.setdefault("epochs", kind_epochs)
        spec = default_spec(arch, dataset, seed=self.config.seed if seed is None else seed,
                            **overrides)
        run = self.store.train(spec, dataset, self.device, progress=self.progress)
        self.runs[run.path.name] = run
        return run

    def classifier(self, arch: str | None = None, seed: int | None = None,
                   **overrides: Any) -> nn.Module:
        return self.train(arch or self.classifier_arch, seed, **overrides).load(self.device)

    def autoencoder(self, seed: int | None = None, **overrides: Any) -> nn.Module:
        return self.train("conv-ae", seed, **overrides).load(self.device)

    def ae_c(self, classifier: nn.Module, seed: int | None = None) -> nn.Module:
        return AEClassifier(self.autoencoder(seed), classifier).eval()

    def eval_split(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` test images (all when None): a fixed, documented subset."""
        n = len(self.dataset.x_test) if n is None else min(n, len(self.dataset.x_test))
        return self.dataset.x_test[:n], self.dataset.y_test[:n]

    def provenance(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "config_hash": self.config.digest,
                "dataset": self.dataset.name, "data_checksum": self.dataset.checksum,
                "versions": library_versions()}


class Cells:
    """One JSON file per finished cell, written atomically: an interrupted experiment
    redoes only the cells it had not finished."""

    def __init__(self, out_dir: Path, experiment: str, ws: Workspace) -> None:
        self.dir = Path(out_dir) / "cells" / experiment
        self.experiment = experiment
        self.ws = ws

    def run(self, key: dict[str, Any], compute: Callable[[], Row]) -> Row:
        blob = json.dumps({"experiment": self.experiment, "config": self.ws.config.digest,
                           "data": self.ws.dataset.checksum, **key}, sort_keys=True)
        path = self.dir / f"{hashlib.sha256(blob.encode()).hexdigest()[:20]}.json"
        if path.is_file():
            return self._done(json.loads(path.read_text()))
        start = time.perf_counter()
        values = compute()
        row = {"experiment": self.experiment, **key, **values,
               "cell_seconds": time.perf_counter() - start, **self.ws.provenance()}
        atomic.write_json(path, row)
        # the stored form: a resumed run returns exactly what a fresh one did
        return self._done(json.loads(json.dumps(row)))

    def _done(self, row: Row) -> Row:
        if self.ws.on_cell is not None:
            self.ws.on_cell(row)
        return row


def percent(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def diff(ours: float | None, paper: float | None) -> str:
    return "-" if ours is None or paper is None else f"{ours - paper:+.2f}"


def write_outputs(out_dir: Path, experiment: str, rows: Sequence[Row], markdown: str) -> dict:
    """``<experiment>.json`` (rows with provenance), ``.csv`` and ``.md``, atomically."""
    out_dir = Path(out_dir)
    atomic.write_json(out_dir / f"{experiment}.json", {"experiment": experiment,
                                                        "rows": list(rows)})
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list))
                         else v for k, v in row.items()})
    atomic.write_text(out_dir / f"{experiment}.csv", buf.getvalue())
    atomic.write_text(out_dir / f"{experiment}.md", markdown)
    return {k: str(out_dir / f"{experiment}.{k}") for k in ("json", "csv", "md")}
