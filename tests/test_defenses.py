"""The cited autoencoder defenses: shapes, training, detector thresholds, determinism,
the store round trip, and the reject-logit convention with its adaptive attack."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from aerobust import attacks, load_model
from aerobust.attacks import APGD, PGD
from aerobust.attacks.model import CountedModel
from aerobust.errors import UserError
from aerobust.models import DEFENSES, LeNet5, build_model
from aerobust.rejection import (
    detector_margin,
    fooled,
    log_excess,
    rejected,
    rejects,
    threshold_at,
    with_reject_logit,
)
from aerobust.training import RunStore, default_spec
from aerobust.training.defense_recipes import detector_scores
from aerobust.training.defenses import (
    KINDS,
    defense_spec,
    fit_defense,
    held_out_split,
    train_defense,
)
from tests.conftest import make_dataset

LENET = {"arch": "lenet5", "kwargs": {"in_channels": 1, "image_size": 28, "num_classes": 10}}
BUILD = {"magnet": {"classifier": LENET}, "puvae": {"classifier": LENET},
         "hgd": {"classifier": LENET}, "cascade-dae": {}}


@pytest.fixture(scope="module")
def data():
    return make_dataset(n_train=64, n_test=16, classes=3)


def _spec(kind: str, dataset, **settings):
    clf = default_spec("lenet5", dataset, epochs=1)
    return defense_spec(kind, dataset, clf, settings=settings, epochs=2, batch_size=32)


def _fit(kind: str, dataset, **settings):
    if kind == "hgd":
        settings.setdefault("attack_steps", 3)  # PGD in every batch: kept short here
    spec = _spec(kind, dataset, **settings)
    torch.manual_seed(1)
    guarded = None if kind == "cascade" else LeNet5(num_classes=dataset.num_classes).eval()
    return spec, *fit_defense(spec, dataset, torch.device("cpu"), classifier=guarded,
                              progress=False)


@pytest.mark.parametrize("arch", DEFENSES)
def test_shapes_and_the_reject_logit(arch):
    model = build_model(arch, **BUILD[arch]).eval()
    out = model(torch.rand(5, 1, 28, 28))
    detects = arch in ("magnet", "puvae")
    assert out.shape == (5, 11 if detects else 10)
    assert rejects(model) is detects
    if detects:  # thresholds start at +inf: nothing rejected before calibration
        assert not rejected(out).any()


@pytest.mark.parametrize("kind", KINDS)
def test_training_moves_the_loss_and_the_forward_is_deterministic(kind, data):
    spec, model, history = _fit(kind, data)
    by_phase: dict[str, list[float]] = {}
    for row in history:
        by_phase.setdefault(row["phase"], []).append(row["train_loss"])
    assert len(history) == spec.epochs * len(by_phase)
    for phase, losses in by_phase.items():
        assert all(math.isfinite(v) for v in losses)
        assert losses[-1] < losses[0], (phase, losses)
    x = data.x_test[:6]
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # every defense here is deterministic
    assert not model.training


@pytest.mark.parametrize("kind", ["magnet", "puvae"])
def test_threshold_gives_the_false_positive_rate_on_held_out_data(kind, data):
    spec, model, history = _fit(kind, data, fpr=0.1, held_out=0.25)
    _, held = held_out_split(spec, len(data.x_train))
    n_held = round(0.25 * len(data.x_train))
    assert len(held) == n_held
    expected = math.floor(0.1 * n_held) / n_held
    # each detector rejects its share of the held-out clean images ...
    scores = detector_scores(model, data.x_train[held])
    thresholds = model.thresholds if kind == "magnet" else model.threshold
    for k in range(scores.shape[1]):
        assert (scores[:, k] > thresholds[k]).double().mean().item() == pytest.approx(expected)
    # ... and the model's reject logit rejects any input one of them flags (MagNet: at
    # most the sum of the detectors' rates), as the history records
    with torch.no_grad():
        share = rejected(model(data.x_train[held])).double().mean().item()
    assert history[-1]["held_out_false_positive_rate"] == pytest.approx(share)
    assert expected <= share <= scores.shape[1] * expected + 1e-12


def test_threshold_at_rejects_floor_fpr_n():
    scores = torch.arange(1.0, 101.0)
    for fpr in (0.0, 0.01, 0.05, 0.29):
        t = threshold_at(scores, fpr)
        assert int((scores > t).sum()) == math.floor(fpr * 100 + 1e-9)
    with pytest.raises(ValueError):
        threshold_at(scores, 1.0)


def test_training_is_seeded(data):
    _, first, _ = _fit("dae", data)
    _, second, _ = _fit("dae", data)
    for (k, a), b in zip(first.state_dict().items(), second.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k


def test_store_round_trip_loads_one_module(tmp_path, data):
    spec = defense_spec("magnet", data, default_spec("lenet5", data, epochs=1),
                        settings={"fpr": 0.1}, epochs=1, batch_size=32)
    run = train_defense(spec, data, RunStore(tmp_path), device="cpu", progress=False)
    assert run.path.name.startswith("defense-magnet-synthetic-")
    again = train_defense(spec, data, RunStore(tmp_path), device="cpu", progress=False)
    assert again.path == run.path  # reused, not retrained
    model = load_model(run.checkpoint, kind="classifier")
    assert rejects(model) and torch.isfinite(model.thresholds).all()
    with torch.no_grad():
        assert torch.equal(model(data.x_test), run.load()(data.x_test))
    assert "test_false_positive_rate" in run.metrics


def test_bad_settings_are_one_line_errors(data):
    with pytest.raises(UserError, match="no setting"):
        _spec("dae", data, fpr=0.1)
    with pytest.raises(UserError, match="guide"):
        _spec("hgd", data, guide="pixels")
    with pytest.raises(UserError, match="noise"):
        _spec("dae", data, noise=-1)


# --- the reject-logit convention and the adaptive attack on a detector -------------

class ToyDetector(nn.Module):
    """Two pixels (a, b); clean data lie on b = 0.5. The classifier leans on b (off the
    data), the detector flags |b - 0.5| > 0.005: following the classifier's gradient
    leaves the data and is caught, while a = 0.5 + d on the data fools it unseen."""

    rejects = True
    threshold = 0.005 ** 2

    def __init__(self, offset: float = 0.0) -> None:
        super().__init__()
        self.offset = offset  # added to the score: how close clean points sit to rejection

    def forward(self, x):
        a, b = x[:, 0, 0, 0], x[:, 0, 0, 1]
        z1 = 2 * (a - 0.5) + 40 * (b - 0.5)
        logits = torch.stack([torch.zeros_like(z1), z1], dim=1)
        score = ((b - 0.5).pow(2) + self.offset).unsqueeze(1)
        return with_reject_logit(logits, log_excess(score, torch.tensor([self.threshold])))


def _toy_points(n: int = 8):
    x = torch.zeros(n, 1, 1, 2)
    x[:, 0, 0, 0] = torch.linspace(0.3, 0.35, n)
    x[:, 0, 0, 1] = 0.5
    return x, torch.zeros(n, dtype=torch.long)


def test_rejection_counts_as_robust_and_clean_rejection_as_error():
    logits = torch.tensor([[0.0, 1.0, 2.0], [3.0, 1.0, 2.0], [0.0, 5.0, 2.0]])
    y = torch.tensor([0, 0, 0])
    assert rejected(logits).tolist() == [True, False, False]
    assert fooled(logits, y, rejecting=True).tolist() == [False, False, True]
    assert fooled(logits, y, rejecting=False).tolist() == [True, False, True]
    model = ToyDetector()
    x, y = _toy_points()
    x[0, 0, 0, 1] = 0.6  # a clean input the detector rejects
    ev = attacks.evaluate(model, x, y, PGD(eps=0.0))
    assert ev.false_positive_rate == pytest.approx(1 / 8)
    assert ev.clean_accuracy == pytest.approx(7 / 8)


def test_adaptive_loss_evades_a_detector_that_plain_pgd_does_not():
    model = ToyDetector()
    x, y = _toy_points()
    settings = dict(eps=0.25, steps=60, step_size=0.01, random_start=False)
    plain = attacks.evaluate(model, x, y, PGD(**settings))
    adaptive = attacks.evaluate(model, x, y, PGD(**settings, loss=detector_margin))
    assert plain.clean_accuracy == 1.0 and plain.false_positive_rate == 0.0
    assert plain.robust_accuracy == 1.0  # every plain adversarial was rejected ...
    with torch.no_grad():  # ... not merely unsuccessful: PGD on CE went off the data
        out = model(PGD(**settings)(model, x, y).x_adv)
    assert rejected(out).all()
    assert adaptive.robust_accuracy == 0.0  # a wrong class, not rejected, every point
    with torch.no_grad():
        adv = model(PGD(**settings, loss=detector_margin)(model, x, y).x_adv)
    assert not rejected(adv).any() and (adv.argmax(dim=1) == 1).all()
    assert (detector_margin(adv, y) > 0).all()
    # APGD takes the same loss: on CE it fails, on the adaptive loss it evades
    assert attacks.evaluate(model, x, y, APGD(eps=0.25, steps=60)).robust_accuracy == 1.0
    for params in ({"loss": detector_margin}, {"loss": "detector-margin"},
                   {"loss": "detector-margin", "targeted": True, "n_target_classes": 9}):
        ev = attacks.evaluate(model, x, y, APGD(eps=0.25, steps=60, **params))
        assert ev.robust_accuracy == 0.0, params



def test_cw_and_deepfool_do_not_take_a_rejection_for_a_success():
    model = ToyDetector()
    x, y = _toy_points()
    # CW: its search now beats max(true, reject), so it walks along the data (a > 0.5,
    # b = 0.5) to a wrong class the detector accepts, never stopping at a rejected iterate
    result = attacks.CW(binary_steps=5, steps=200, lr=0.01)(model, x, y)
    with torch.no_grad():
        out = model(result.x_adv)
    assert result.success.all() and not rejected(out).any()
    # the shortest way: b to the detector's edge (+0.005, worth 0.2 of logit), a the rest
    assert (result.l2 >= (0.4 - x[:, 0, 0, 0]) - 1e-4).all()
    # DeepFool knows no detector: its steps follow the classifier off the data into the
    # detector; a rejected iterate is not a success, so none is claimed
    df = attacks.DeepFool(steps=20)
    assert not df(model, x, y).success.any()
    claimed = df._attack(CountedModel(model), x, y, None)[1]
    assert claimed is not None and not claimed.any()


def test_apgd_t_never_targets_the_reject_logit():
    # clean points score 0.8 of the threshold: the reject logit, max - 0.22, ranks above
    # the wrong class (-0.4 to -0.3), so only a rule that skips it targets the class
    model = ToyDetector(offset=0.8 * ToyDetector.threshold)
    x, y = _toy_points()
    with torch.no_grad():
        clean = model(x)
    assert (clean[:, 2] > clean[:, 1]).all() and not rejected(clean).any()
    attack = APGD(eps=0.25, steps=60, loss="detector-margin", targeted=True,
                  n_target_classes=1)
    assert attacks.evaluate(model, x, y, attack).robust_accuracy == 0.0


def test_cli_refuses_a_setting_the_kind_lacks(tmp_path, capsys):
    from aerobust.cli import main

    code = main(["train", "defense", "--kind", "dae", "--param", "fpr=0.1",
                 "--store", str(tmp_path), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no setting fpr" in err and len(err.strip().splitlines()) == 1


def test_an_interrupted_defense_resumes_to_the_same_weights(tmp_path, data):
    spec = defense_spec("cascade", data, epochs=1, batch_size=32)  # three phases

    def stop_after_phase_one(done: int) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        RunStore(tmp_path / "a").train(spec, data, device="cpu", progress=False,
                                       on_epoch_end=stop_after_phase_one,
                                       fit_fn=fit_defense)
    saved = torch.load(RunStore(tmp_path / "a").path(spec) / "resume.pt", weights_only=True)
    resumed = train_defense(spec, data, RunStore(tmp_path / "a"), device="cpu",
                            progress=False)
    # phase one was not trained again: its row (its timing included) is the saved one
    assert resumed.metrics["history"][0] == saved["history"][0]
    straight = train_defense(spec, data, RunStore(tmp_path / "b"), device="cpu",
                             progress=False)
    assert [r["phase"] for r in resumed.metrics["history"]] == ["denoise", "reduce",
                                                                 "classify"]
    for (k, a), b in zip(resumed.load().state_dict().items(),
                         straight.load().state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_a_cell_trains_a_defense_over_the_classifier_it_guards(tmp_path, data):
    from aerobust.experiments.compute import Context
    from aerobust.experiments.spec import Cell, Model, Net

    clf = Net("lenet5", seed=0, epochs=1)
    dae = Net("ae-classifier", seed=0, epochs=1,
              options={"defense": "dae", "settings": {"noise": 0.3},
                       "guards": dataclasses.asdict(clf)})
    cell = Cell("defenses", {"variant": "DAE"}, "clean", Model(dae), {"n": 8})
    assert cell.nets() == [dae, clf] and dae.guarded() == clf
    assert [c for c in cell.components() if ":" in c] == ["defense:dae", "train:lenet5"]
    ctx = Context(data, RunStore(tmp_path), device="cpu", progress=False)
    run = ctx.run(dae)
    assert run.spec.defense == "dae" and run.spec.settings["noise"] == 0.3
    # the guarded classifier is the plain net's own run: trained once, shared
    assert run.spec.classifier_spec == ctx.train_spec(clf)[0]
    assert ctx.store.finished(ctx.train_spec(clf)[0]) is not None
    assert ctx.model(cell.model)(data.x_test[:4]).shape == (4, 3)


def test_a_finished_defense_is_reused_not_trained_again(tmp_path, data):
    spec = _spec("dae", data)
    store = RunStore(tmp_path)
    run = train_defense(spec, data, store, device="cpu", progress=False)
    stamp = run.checkpoint.stat().st_mtime_ns
    assert store.finished(spec) is not None  # its files read back as this spec's
    again = train_defense(spec, data, store, device="cpu", progress=False)
    assert again.checkpoint.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("**/*.corrupt-*"))
