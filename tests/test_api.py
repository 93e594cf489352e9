"""The README's Python API example, run as written (on tiny data in a temp store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import aerobust
from aerobust.training import RunStore, default_spec
from tests.conftest import make_dataset


def test_readme_example_evaluates_your_own_ae_and_classifier(tmp_path: Path) -> None:
    ds = make_dataset()
    np.savez(tmp_path / "mine.npz", x_train=ds.x_train.numpy(), y_train=ds.y_train.numpy(),
             x_test=ds.x_test.numpy(), y_test=ds.y_test.numpy())
    store = RunStore(tmp_path / "runs")
    clf_run = store.train(default_spec("lenet5", ds, epochs=3, batch_size=16), ds, "cpu",
                          progress=False)

    # --- as in the README: any nn.Module mapping [0,1] images to images works as the AE
    dataset = aerobust.load_dataset(f"npz:{tmp_path / 'mine.npz'}")
    classifier = aerobust.load_model(clf_run.checkpoint)
    my_ae = torch.nn.Sequential(torch.nn.AvgPool2d(3, stride=1, padding=1))  # a blur "defense"
    defended = aerobust.AEClassifier(my_ae, classifier)
    pgd = aerobust.attacks.get("pgd", eps=20 / 255, steps=40)
    for name, model in (("C", classifier), ("AE-C", defended)):
        result = aerobust.evaluate(model, dataset.x_test, dataset.y_test, pgd)
        print(name, result.clean_accuracy, result.robust_accuracy)
    # ---
        assert result.n == len(dataset.x_test)
        # the accuracies, computed here from the model and the attack's own adversarials
        x, y = dataset.x_test, dataset.y_test
        with torch.no_grad():
            clean = model(x).argmax(1) == y
        x_adv = pgd(model, x, y).x_adv
        assert float((x_adv - x).abs().max()) <= 20 / 255 + 1e-6
        with torch.no_grad():
            robust = clean & (model(x_adv).argmax(1) == y)
        assert result.clean_accuracy == pytest.approx(float(clean.double().mean()))
        assert result.robust_accuracy == pytest.approx(float(robust.double().mean()))
        assert result.clean_accuracy > 0.9
