"""``benchmarks/sensitivity_cost.py`` measures for minutes on the real data, so its
pricing is checked here on made-up pass costs: a cell costs its counted passes, a
substitute's adversarials are paid for once, and the two-worker schedule waits for a
training before the cells that need it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aerobust.experiments import ExperimentConfig, Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import sensitivity_cost as bench

F, FB = 0.5, 2.0  # made-up ms per image: forward, forward+backward


@pytest.fixture(scope="module")
def priced() -> list:
    ws = Workspace(ExperimentConfig(dataset="digits", n_eval=20, n_cw=10))
    cells = ws.cells("sensitivity")
    costs = {bench._model_name(m): (F, FB) for c in cells for m in bench._cell_models(c)}
    return bench.price(cells, costs, {})


def test_a_cell_costs_its_counted_passes(priced: list) -> None:
    cw = next(s for c, s, _ in priced if c.coords["site"] == "t1-cw"
              and c.coords["axis"] == "default" and c.coords["variant"] == "C")
    p = next(c for c, _, _ in priced if c.coords["site"] == "t1-cw").params
    steps = p["attack"]["params"]["binary_steps"] * p["attack"]["params"]["steps"]
    assert cw == pytest.approx(p["n"] * (2 * F + steps * FB) / 1e3)
    df = next((c, s) for c, s, _ in priced if c.coords["site"] == "t1-deepfool"
              and c.coords["choice"] == "3")
    # 4 forwards and 3 x 9 backwards (a backward: the pass less its forward), plus 2
    assert df[1] == pytest.approx(df[0].params["n"] * (6 * F + 27 * (FB - F)) / 1e3)


def test_a_substitutes_adversarials_are_paid_for_once(priced: list) -> None:
    transfers = [(c, s) for c, s, _ in priced if c.coords["site"] == "t2a-fgsm-80"
                 and c.model.autoencoder is None and c.params["attack"]["params"]["clip"]]
    assert len(transfers) > 1  # C under the classifier choices, on one substitute
    scoring = 4 * F * transfers[0][0].params["n"] / 1e3  # 2 forwards each side
    assert transfers[0][1] == pytest.approx(scoring + FB * transfers[0][0].params["n"] / 1e3)
    assert all(s == pytest.approx(scoring) for _, s in transfers[1:])


def test_two_workers_wait_for_the_training_a_cell_needs() -> None:
    tasks = [("train", 10.0, []), ("a", 4.0, ["train"]), ("b", 3.0, []), ("c", 3.0, [])]
    assert bench.two_workers(tasks) == 14.0  # b and c beside the training, then a
    assert bench.two_workers([("x", 5.0, []), ("y", 5.0, [])]) == 5.0
