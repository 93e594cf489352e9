from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from aerobust.errors import UserError
from aerobust.models import load_model
from aerobust.training import RunStore, TrainingDiverged, TrainSpec, default_spec
from tests.conftest import make_dataset


def _spec(dataset, arch: str = "lenet5", **kw) -> TrainSpec:
    return default_spec(arch, dataset, epochs=kw.pop("epochs", 3), batch_size=32, **kw)


def _weights(run) -> dict[str, torch.Tensor]:
    return load_model(run.checkpoint).state_dict()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_classifier_learns_and_run_records_provenance(tmp_path: Path, tiny_dataset) -> None:
    run = RunStore(tmp_path).train(_spec(tiny_dataset, epochs=5), tiny_dataset, "cpu",
                                   progress=False)
    assert run.metrics["test_accuracy"] > 0.9
    info = json.loads((run.path / "run.json").read_text())
    assert info["dataset_checksum"] == tiny_dataset.checksum
    assert {"torch", "numpy", "aerobust", "python"} <= set(info["versions"])
    assert info["spec"]["seed"] == 0 and len(info["metrics"]["history"]) == 5
    assert not (run.path / "resume.pt").exists()


def test_autoencoder_reduces_reconstruction_error(tmp_path: Path, tiny_dataset) -> None:
    store = RunStore(tmp_path)
    one = store.train(_spec(tiny_dataset, "conv-ae", epochs=1), tiny_dataset, "cpu",
                      progress=False)
    six = store.train(_spec(tiny_dataset, "conv-ae", epochs=6), tiny_dataset, "cpu",
                      progress=False)
    assert six.metrics["test_mse"] < one.metrics["test_mse"]


def test_same_seed_same_weights_other_seed_other_weights(tmp_path: Path, tiny_dataset) -> None:
    a = RunStore(tmp_path / "a").train(_spec(tiny_dataset), tiny_dataset, "cpu", progress=False)
    b = RunStore(tmp_path / "b").train(_spec(tiny_dataset), tiny_dataset, "cpu", progress=False)
    c = RunStore(tmp_path / "a").train(_spec(tiny_dataset, seed=1), tiny_dataset, "cpu",
                                       progress=False)
    assert a.path.name == b.path.name != c.path.name
    assert _same(_weights(a), _weights(b))
    assert not _same(_weights(a), _weights(c))


@pytest.mark.parametrize("arch,augment", [("lenet5", False), ("conv-ae", False),
                                          ("lenet5", True)])
def test_resume_after_interruption_gives_the_uninterrupted_weights(
    tmp_path: Path, tiny_dataset, arch: str, augment: bool
) -> None:
    spec = _spec(tiny_dataset, arch, epochs=4, augment=augment)
    whole = RunStore(tmp_path / "whole").train(spec, tiny_dataset, "cpu", progress=False)

    def crash_after_two(epoch: int) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    store = RunStore(tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        store.train(spec, tiny_dataset, "cpu", progress=False, on_epoch_end=crash_after_two)
    assert (store.path(spec) / "resume.pt").exists()
    assert store.finished(spec) is None
    epochs_run: list[int] = []
    resumed = store.train(spec, tiny_dataset, "cpu", progress=False,
                          on_epoch_end=epochs_run.append)
    assert epochs_run == [3, 4]
    assert _same(_weights(whole), _weights(resumed))

    def figures(run) -> list[dict[str, float]]:
        return [{k: v for k, v in h.items() if k != "seconds"} for h in run.metrics["history"]]

    assert figures(resumed) == figures(whole)


def test_finished_run_is_reused_not_retrained(tmp_path: Path, tiny_dataset) -> None:
    store = RunStore(tmp_path)
    spec = _spec(tiny_dataset, epochs=1)
    first = store.train(spec, tiny_dataset, "cpu", progress=False)
    calls: list[int] = []
    again = store.train(spec, tiny_dataset, "cpu", progress=False, on_epoch_end=calls.append)
    assert calls == [] and again.path == first.path


def test_same_images_at_another_path_reuse_the_run(tmp_path: Path, tiny_dataset) -> None:
    """The store is content-addressed: an npz moved to another folder is the same data
    (its checksum), so it finds the run trained on it; other images do not."""
    store = RunStore(tmp_path)
    here = dataclasses.replace(tiny_dataset, name="npz:/tmp/a1b2/split.npz")
    there = dataclasses.replace(tiny_dataset, name="npz:/var/tmp/c3d4/split.npz")
    first = store.train(_spec(here, epochs=1), here, "cpu", progress=False)
    calls: list[int] = []
    again = store.train(_spec(there, epochs=1), there, "cpu", progress=False,
                        on_epoch_end=calls.append)
    assert calls == [] and again.path == first.path
    other = make_dataset(seed=5)
    assert _spec(other, epochs=1).run_name != _spec(tiny_dataset, epochs=1).run_name


def test_data_with_another_checksum_is_refused(tmp_path: Path, tiny_dataset) -> None:
    other = make_dataset(seed=5)
    with pytest.raises(UserError, match="checksum"):
        RunStore(tmp_path).train(_spec(tiny_dataset), other, "cpu", progress=False)


def test_divergence_is_reported_not_saved(tmp_path: Path) -> None:
    ds = make_dataset()
    nan = ds.x_train.clone()
    nan[0, 0, 0, 0] = float("nan")
    bad = type(ds)(name=ds.name, x_train=nan, y_train=ds.y_train, x_test=ds.x_test,
                   y_test=ds.y_test, num_classes=ds.num_classes, checksum=ds.checksum)
    with pytest.raises(TrainingDiverged, match="loss became nan"):
        RunStore(tmp_path).train(_spec(bad, epochs=1), bad, "cpu",
                                 progress=False)


def test_spec_validation() -> None:
    ds = make_dataset()
    with pytest.raises(UserError, match="not a classifier"):
        TrainSpec(kind="classifier", arch="conv-ae", dataset="x", data_checksum="c")
    with pytest.raises(UserError, match="epochs"):
        _spec(ds, epochs=0)
    with pytest.raises(UserError, match="optimizer"):
        _spec(ds, optimizer="rmsprop")
