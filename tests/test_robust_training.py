"""Joint latent-classifier training and PGD adversarial training (issue: robust features)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from aerobust import attacks
from aerobust.data import Dataset
from aerobust.errors import UserError
from aerobust.models import build_model, load_model
from aerobust.training import RunStore, default_spec
from aerobust.training.losses import make_loss
from aerobust.training.trainer import _optimizers, _steps, adversarial_batch
from tests.conftest import make_dataset


def _latent_spec(ds, **kw):
    return default_spec("latent-classifier", ds, epochs=kw.pop("epochs", 2), batch_size=32, **kw)


def _decoder_grads(model) -> list[torch.Tensor | None]:
    return [p.grad for p in model.autoencoder.decoder.parameters()]


def test_regularization_with_lambda_zero_never_reaches_the_decoder() -> None:
    ds = make_dataset()
    x, y = ds.x_train[:16], ds.y_train[:16]
    for lam, reaches in ((0.0, False), (1.0, True)):
        spec = _latent_spec(ds, method="regularization", lam=lam)
        torch.manual_seed(0)
        model = build_model(spec.arch, **spec.arch_kwargs)
        _steps(spec, model, _optimizers(spec, model), make_loss("ce"), x, y)
        grads = _decoder_grads(model)
        if reaches:
            assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0
                                                             for g in grads)
        else:
            assert all(g is None for g in grads)


@pytest.mark.parametrize("gamma", [0, 1, 2])
def test_alternating_makes_one_plus_gamma_optimizer_steps_per_batch(gamma: int) -> None:
    ds = make_dataset()
    spec = _latent_spec(ds, method="alternating", gamma=gamma)
    model = build_model(spec.arch, **spec.arch_kwargs)
    opts = _optimizers(spec, model)
    counts = [0] * len(opts)
    for i, opt in enumerate(opts):
        opt.register_step_post_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
    before = [p.clone() for p in model.autoencoder.decoder.parameters()]
    _steps(spec, model, opts, make_loss("ce"), ds.x_train[:16], ds.y_train[:16])
    assert counts == ([1, gamma] if gamma else [1])
    moved = any(not torch.equal(a, b)
                for a, b in zip(before, model.autoencoder.decoder.parameters(), strict=True))
    assert moved == (gamma > 0)  # only reconstruction steps move the decoder


def test_alternating_with_gamma_zero_is_plain_ce_training(tmp_path: Path) -> None:
    ds = make_dataset()
    store = RunStore(tmp_path)
    plain = store.train(_latent_spec(ds), ds, "cpu", progress=False)
    alt = store.train(_latent_spec(ds, method="alternating", gamma=0), ds, "cpu",
                      progress=False)
    assert plain.path != alt.path
    a, b = load_model(plain.checkpoint).state_dict(), load_model(alt.checkpoint).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    def figures(run):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in run.metrics["history"]]

    assert figures(plain) == figures(alt)


def test_latent_training_resumes_bit_exactly(tmp_path: Path) -> None:
    ds = make_dataset()
    spec = _latent_spec(ds, method="alternating", gamma=1, epochs=3)
    whole = RunStore(tmp_path / "a").train(spec, ds, "cpu", progress=False)

    def stop(epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    cut = RunStore(tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        cut.train(spec, ds, "cpu", progress=False, on_epoch_end=stop)
    resumed = cut.train(spec, ds, "cpu", progress=False)
    a, b = load_model(whole.checkpoint).state_dict(), load_model(resumed.checkpoint).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "test_mse" in resumed.metrics


def test_adversarial_batches_are_adversarial_for_the_current_model(tmp_path: Path) -> None:
    ds = make_dataset()
    spec = default_spec("lenet5", ds, epochs=3, batch_size=16,
                        adversarial={"eps": 0.1, "steps": 5, "step_size": 0.04})
    model = RunStore(tmp_path).train(spec.replace(adversarial={}), ds, "cpu",
                                     progress=False).load()
    model.train()
    x, y = ds.x_test, ds.y_test
    x_adv = adversarial_batch(spec, model, x, y, seed=3)
    assert model.training  # the attack restored train mode
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)
    # and the training loop trains on them: another run, other weights, more robust
    clean_run = RunStore(tmp_path).train(spec.replace(adversarial={}), ds, "cpu",
                                         progress=False)
    adv_run = RunStore(tmp_path).train(spec, ds, "cpu", progress=False)
    assert adv_run.path.name != clean_run.path.name
    clean, robust = clean_run.load(), adv_run.load()
    assert any(not torch.equal(a, b) for a, b in zip(
        clean.state_dict().values(), robust.state_dict().values(), strict=True))
    pgd = attacks.get("pgd", eps=0.2, steps=10, step_size=0.05, seed=0)
    with torch.no_grad():
        robust_accuracy = {name: float((m(pgd(m, x, y).x_adv).argmax(1) == y).float().mean())
                           for name, m in (("clean", clean), ("adversarial", robust))}
    # measured: 0.33 for the clean run, 0.60 for the adversarial one (48 test points)
    assert robust_accuracy["adversarial"] > robust_accuracy["clean"] + 0.1


def test_spec_checks_for_the_new_methods() -> None:
    ds = make_dataset()
    with pytest.raises(UserError, match="latent-classifier"):
        default_spec("lenet5", ds, method="alternating", gamma=1)
    with pytest.raises(UserError, match="only by the regularization"):
        _latent_spec(ds, method="alternating", lam=1.0)
    with pytest.raises(UserError, match="unknown training method"):
        _latent_spec(ds, method="joint")
    with pytest.raises(UserError, match="adversarial"):
        default_spec("lenet5", ds, adversarial={"eps": 0.3})
    with pytest.raises(UserError, match="out of range"):
        default_spec("lenet5", ds, adversarial={"eps": 3, "steps": 1, "step_size": 0.1})


def test_new_fields_at_defaults_keep_old_run_names() -> None:
    ds = make_dataset()
    spec = default_spec("lenet5", ds)
    assert spec.run_name == spec.replace(method="standard", lam=0.0, gamma=0,
                                         adversarial={}).run_name
    assert spec.run_name != default_spec("lenet5", ds, adversarial={
        "eps": 0.3, "steps": 40, "step_size": 0.01}).run_name


def test_cli_trains_latent_and_adversarial_classifiers(tmp_path: Path, capsys) -> None:
    import json

    import numpy as np

    from aerobust.cli import main

    ds = make_dataset(n_train=48, n_test=12)
    np.savez(tmp_path / "d.npz", x_train=ds.x_train.numpy(), y_train=ds.y_train.numpy(),
             x_test=ds.x_test.numpy(), y_test=ds.y_test.numpy())
    common = ["--dataset", f"npz:{tmp_path / 'd.npz'}", "--epochs", "1", "--store",
              str(tmp_path / "s"), "--quiet", "--json"]
    assert main(["train", "latent", "--method", "alternating", "--gamma", "2", *common]) == 0
    latent = json.loads(capsys.readouterr().out)
    spec = json.loads((Path(latent["run"]) / "spec.json").read_text())
    assert (spec["method"], spec["gamma"], spec["arch"]) == ("alternating", 2,
                                                            "latent-classifier")
    assert main(["train", "classifier", "--adversarial", "pgd", "--eps", "51", "--steps", "2",
                 *common]) == 0
    adv = json.loads(capsys.readouterr().out)
    spec = json.loads((Path(adv["run"]) / "spec.json").read_text())
    assert spec["adversarial"] == {"eps": pytest.approx(0.2), "steps": 2, "step_size": 0.01,
                                   "ramp_epochs": 5}
    assert main(["train", "latent", "--method", "regularization", "--gamma", "1",
                 *common]) == 2
    assert "only by the alternating" in capsys.readouterr().err


def test_eps_ramps_up_over_the_first_epochs() -> None:
    """With ramp_epochs = 4, a batch after 1 epoch is attacked at a quarter of eps (and
    of the step size); from epoch 4 on at the full eps."""
    ds = make_dataset()
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=3)
    spec = default_spec("lenet5", ds, adversarial={"eps": 0.2, "steps": 3, "step_size": 0.1,
                                                   "ramp_epochs": 4})
    x, y = ds.x_test, ds.y_test
    early = adversarial_batch(spec, model, x, y, seed=0, epochs_done=1.0)
    late = adversarial_batch(spec, model, x, y, seed=0, epochs_done=6.0)
    assert float((early - x).abs().max()) <= 0.05 + 1e-6
    assert float((late - x).abs().max()) > 0.05 + 1e-3
    with pytest.raises(UserError, match="ramp_epochs >= 0"):
        default_spec("lenet5", ds, adversarial={"eps": 0.2, "steps": 3, "step_size": 0.1,
                                                "ramp_epochs": -1})


def test_adversarial_training_makes_lenet5_robust_on_real_mnist(mnist_dir: Path,
                                                                 tmp_path: Path) -> None:
    """Madry training at eps 0.3, eps ramped up over 3 epochs (here PGD-10 steps of 0.05,
    on 3,000 of the 8,000 training images, 8 epochs: what a test affords) against plain
    training on the same images, PGD-20 at eps 0.3 on 300 held-out images. Started at
    full eps without the ramp, LeNet5 stalls at chance: 10% clean, and ~10% "robust"
    from predicting one class, which the clean-accuracy check rules out."""
    from aerobust.attacks import PGD, evaluate
    from aerobust.data import load_dataset
    from aerobust.data.mnist import write_test_split_npz

    full = load_dataset(f"npz:{write_test_split_npz(mnist_dir, tmp_path / 'm.npz')}")
    ds = Dataset(name="mnist-3000-300", x_train=full.x_train[:3000],
                 y_train=full.y_train[:3000], x_test=full.x_test[:300],
                 y_test=full.y_test[:300], num_classes=10,
                 checksum=f"{full.checksum}:train[:3000]:test[:300]")
    plain = default_spec("lenet5", ds, epochs=8, seed=0)
    adversarial = plain.replace(adversarial={"eps": 0.3, "steps": 10, "step_size": 0.05,
                                             "ramp_epochs": 3})
    store = RunStore(tmp_path / "store")
    attack = PGD(eps=0.3, steps=20)
    ev = {name: evaluate(store.train(spec, ds, "cpu", progress=False).load(), ds.x_test,
                         ds.y_test, attack)
          for name, spec in (("plain", plain), ("adversarial", adversarial))}
    summary = {k: (e.clean_accuracy, e.robust_accuracy) for k, e in ev.items()}
    assert ev["plain"].robust_accuracy < 0.05, summary
    assert ev["adversarial"].clean_accuracy > 0.5, summary
    assert ev["adversarial"].robust_accuracy > ev["plain"].robust_accuracy + 0.1, summary


def test_latent_decoder_starts_at_the_mean_pixel(tmp_path: Path) -> None:
    """The latent classifier's decoder gets the stand-alone AE's output-bias start: its
    first reconstruction is about the data's mean pixel everywhere, not 0.5."""
    import math

    ds = make_dataset()
    # Adam moves each weight by about lr per step: 1e-12 keeps the initial weights
    spec = _latent_spec(ds, method="regularization", lam=1.0, epochs=1).replace(lr=1e-12)
    model = RunStore(tmp_path).train(spec, ds, "cpu", progress=False).load()
    mean = float(ds.x_train.mean())
    bias = model.autoencoder.decoder[-2].bias
    assert float(bias.detach().mean()) == pytest.approx(math.log(mean / (1 - mean)), abs=1e-4)
