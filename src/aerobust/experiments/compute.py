"""``compute(cell, context) -> row``: the one function that turns a cell's spec into its
numbers. The context only supplies what a spec names (the data, the run store that
trains each network once, the device) and remembers work that cells share (loaded
models, adversarials crafted on a substitute), so the row depends on the spec alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from aerobust import attacks
from aerobust.attacks import Evaluation, craft, relabelled, score
from aerobust.audit import audit
from aerobust.data import Dataset
from aerobust.device import resolve_device
from aerobust.experiments.spec import Cell, Model, Net
from aerobust.metrics import gradient_amplitude, predict
from aerobust.models import AEClassifier
from aerobust.threads import stored_work_threads
from aerobust.training import Run, RunStore, TrainSpec, default_spec
from aerobust.training.defenses import DefenseSpec, defense_spec, train_stored

Row = dict[str, Any]


def spec_json(spec: Any) -> str:
    """A spec (a dataclass or plain values) as canonical JSON: equal specs, equal keys."""
    return json.dumps(asdict(spec) if not isinstance(spec, dict) else spec, sort_keys=True)


def percent(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def _indices(mask: torch.Tensor) -> list[int]:
    """The positions where ``mask`` holds: a row's per-point record, so two rows on the
    same images can be compared point by point (a paired test)."""
    return mask.nonzero().flatten().tolist()


class Context:
    """Where cells run: the data, the run store, the device, and shared work."""

    def __init__(self, dataset: Dataset, store: RunStore, device: str | torch.device = "auto",
                 progress: bool = True) -> None:
        self.dataset = dataset
        self.store = store
        self.device = resolve_device(device)
        self.progress = progress
        self.runs: dict[str, Run] = {}  # every run a cell used, by name (for the record)
        self._runs: dict[str, Run] = {}
        self._models: dict[str, nn.Module] = {}
        self._crafted: dict[str, Evaluation] = {}

    def run(self, net: Net) -> Run:
        """The finished training run of ``net`` (trained now if the store lacks it),
        looked up once per process: cells ask for the same runs again and again."""
        key = spec_json(net)
        if key not in self._runs:
            spec, data = self.train_spec(net)
            self.adopt(net, train_stored(spec, data, self.store, self.device,
                                         progress=self.progress))
        return self._runs[key]

    def train_spec(self, net: Net) -> tuple[TrainSpec | DefenseSpec, Dataset]:
        """What training ``net`` means here: its full spec and the data it trains on (a
        substitute's labels are the predictions of the model it imitates, so that
        model's runs are looked up first; a defense's spec holds the spec of the
        classifier it guards, ``Net.guarded``)."""
        data = self.dataset
        if net.labels_from is not None:
            labels = predict(self.model(net.labels_from), data.x_train)
            source = hashlib.sha256(spec_json(net.labels_from).encode()).hexdigest()[:16]
            data = relabelled(data, labels, source)
        if net.defense is not None:
            guarded = net.guarded()
            classifier = None if guarded is None else self.train_spec(guarded)[0]
            return defense_spec(net.defense, data, classifier=classifier,
                                settings=net.options.get("settings"), seed=net.seed,
                                epochs=net.epochs), data
        return default_spec(net.arch, data, seed=net.seed, epochs=net.epochs,
                            **net.options), data

    def adopt(self, net: Net, run: Run) -> None:
        """Use ``run`` as ``net``'s finished run (one trained elsewhere, e.g. by a
        cluster task, or just now by the store)."""
        self._runs[spec_json(net)] = run
        self.runs[run.path.name] = run

    def model(self, spec: Model) -> nn.Module:
        key = spec_json(spec)
        if key not in self._models:
            clf = self.run(spec.classifier).load(self.device)
            self._models[key] = (clf if spec.autoencoder is None else AEClassifier(
                self.run(spec.autoencoder).load(self.device), clf).eval())
        return self._models[key]

    def runs_of(self, spec: Model, prefix: str = "") -> dict[str, str]:
        """The run names behind a model, for the row."""
        out = {f"{prefix}classifier_run": self.run(spec.classifier).path.name}
        if spec.autoencoder is not None:
            out[f"{prefix}autoencoder_run"] = self.run(spec.autoencoder).path.name
        return out

    def images(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` test images: a fixed, documented subset."""
        return self.dataset.x_test[:n], self.dataset.y_test[:n]

    def crafted(self, substitute: Model, attack: dict[str, Any], n: int,
                batch_size: int) -> Evaluation:
        """Adversarials of ``attack`` on ``substitute``, made once and scored on every
        target that substitute attacks (crafting is the expensive half)."""
        key = spec_json({"substitute": asdict(substitute), "attack": attack, "n": n})
        if key not in self._crafted:
            x, y = self.images(n)
            self._crafted[key] = craft(self.model(substitute), x, y,
                                       attacks.get(attack["name"], **attack["params"]),
                                       batch_size=batch_size, progress=self.progress)
        return self._crafted[key]


def compute(cell: Cell, ctx: Context) -> Row:
    """The numbers of one cell (accuracies in percent), computed with the fixed thread
    count of stored work (``aerobust.threads``), so the key names one result."""
    with stored_work_threads():
        return _compute(cell, ctx)


def _compute(cell: Cell, ctx: Context) -> Row:
    p = cell.params
    model = ctx.model(cell.model)
    x, y = ctx.images(p["n"])
    runs = ctx.runs_of(cell.model)
    if cell.task == "clean":
        correct = predict(model, x).cpu() == y
        accuracy = percent(correct.double().mean().item())
        return {"accuracy": accuracy, "clean_accuracy": accuracy, "n": len(x),
                "points": _indices(correct), **runs}
    if cell.task == "attack":
        spec = p["attack"]
        ev = attacks.evaluate(model, x, y, attacks.get(spec["name"], **spec["params"]),
                              batch_size=p["batch_size"], progress=ctx.progress)
        row = {**ev.to_dict(), "accuracy": percent(ev.robust_accuracy),
               "clean_accuracy": percent(ev.clean_accuracy), "points": _indices(ev.robust),
               **runs}
        del row["robust_accuracy"]
        test_mse = ctx.run(cell.model.classifier).metrics.get("test_mse")
        if test_mse is not None:
            row["test_mse"] = test_mse
        return row
    if cell.task == "transfer":
        sub = cell.substitute
        if sub is None:
            raise ValueError(f"transfer cell {cell.coords} names no substitute")
        crafted = ctx.crafted(sub, p["attack"], p["n"], p["batch_size"])
        result = score(model, crafted, x, y, batch_size=p["batch_size"])
        row = result.to_dict()
        for k in ("accuracy", "clean_accuracy", "substitute_accuracy",
                  "substitute_clean_accuracy"):
            row[k] = percent(row[k])
        row["points"] = row.pop("robust")
        return {**row, **runs, **ctx.runs_of(sub, "substitute_")}
    if cell.task == "gradient":
        g = gradient_amplitude(model, x, y, target=p["target"], batch_size=p["batch_size"])
        return {"gradient_amplitude": g, "n": len(x), "input_dims": x[0].numel(), **runs}
    if cell.task == "audit":
        norm = p.get("norm", "Linf")  # Linf eps in 0-255 units, L2 in [0,1] units
        result = audit(model, x, y, p["eps"] / 255 if norm == "Linf" else p["eps"],
                       budget=p["budget"], seed=p["seed"], batch_size=p["batch_size"],
                       progress=ctx.progress, norm=norm)
        return {**audit_row(result.to_dict()), **runs}
    raise ValueError(f"unknown task {cell.task!r}")


def audit_row(result: dict[str, Any]) -> Row:
    """An audit's numbers (percent, as the other rows) and its evidence; of the
    per-point ledger it keeps the points robust under the ladder and under the paper's
    attack, what a paired comparison of two models on the same points needs."""
    ledger = result.pop("ledger")
    return {
        "n": result["n"], "verdict": result["verdict"],
        "clean_accuracy": percent(result["clean_accuracy"]),
        "baseline_accuracy": percent(result["baseline_robust_accuracy"]),
        "audited_accuracy": percent(result["robust_accuracy"]),
        "audited_interval": [percent(v) for v in result["robust_interval"]],
        "baseline_interval": [percent(v) for v in result["baseline_interval"]],
        "gap": percent(result["gap"]), "mcnemar_p": result["mcnemar_p"],
        "closed_by": result["closed_by"], "reasons": result["reasons"],
        "robust_points": [q["index"] for q in ledger
                          if q["clean_correct"] and q["broken_by"] is None],
        "baseline_robust_points": [q["index"] for q in ledger
                                   if q["clean_correct"] and q["broken_by"] != "pgd-ce"],
        "audit": result,
    }
