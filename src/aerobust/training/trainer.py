"""The training loop: one function for classifiers, autoencoders and latent classifiers
(joint or alternating with reconstruction, the paper's Sec. 3.2), optionally on PGD
adversarial batches; resumable to the bit from a saved state (model, optimizers,
schedules and every random generator).

Adversarial training is the one place training uses an attack; attacks depend on nothing
in training, so data still flows one way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from aerobust.attacks.pgd import PGD
from aerobust.data import Dataset, random_crop_flip
from aerobust.errors import UserError
from aerobust.metrics import classifier_scores, reconstruction_mse
from aerobust.models import ConvAE, LatentClassifier, build_model
from aerobust.training.losses import Loss, make_loss
from aerobust.training.spec import TrainSpec

State = dict[str, Any]


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the settings (usually the learning rate) are off."""


def _optimizer(spec: TrainSpec, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                               weight_decay=spec.weight_decay, nesterov=spec.momentum > 0)
    return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)


def _optimizers(spec: TrainSpec, model: nn.Module) -> list[torch.optim.Optimizer]:
    """One optimizer over the whole model; the alternating method adds a second one over
    the autoencoder for its reconstruction steps, so the two losses keep separate
    moment estimates."""
    opts = [_optimizer(spec, list(model.parameters()))]
    if spec.method == "alternating" and spec.gamma > 0:
        opts.append(_optimizer(spec, list(model.autoencoder.parameters())))
    return opts


def adversarial_batch(spec: TrainSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      seed: int, epochs_done: float = math.inf) -> torch.Tensor:
    """PGD examples against the current model (Madry): the final iterate, fresh random
    start per batch from ``seed``; the model's train mode is restored afterwards.

    With ``ramp_epochs`` set, eps and the step size grow linearly with ``epochs_done``
    (epochs finished, fractional) to their full values: started at eps 0.3, LeNet5 on
    MNIST stalls at chance (loss log 10) and never leaves it, while a short warm-up
    lets it learn (a curriculum, as in Cai et al. 2018 and Gowal et al. 2018)."""
    adv = spec.adversarial
    ramp = adv.get("ramp_epochs", 0)
    scale = min(1.0, epochs_done / ramp) if ramp > 0 else 1.0
    attack = PGD(eps=adv["eps"] * scale, steps=adv["steps"], step_size=adv["step_size"] * scale,
                 seed=seed, keep="last")
    return attack(model, x, y).x_adv


def _steps(spec: TrainSpec, model: nn.Module, opts: list[torch.optim.Optimizer],
           loss_fn: Loss, x: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor]:
    """The losses of the optimizer steps one batch makes (1, or 1 + gamma)."""

    def step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> torch.Tensor:
        if not torch.isfinite(loss):
            return loss  # reported by the caller before any weight changes
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    if spec.method == "regularization" and spec.lam > 0:
        assert isinstance(model, LatentClassifier)
        logits, recon = model.forward_both(x)
        return [step(opts[0], loss_fn(logits, target) + spec.lam * F.mse_loss(recon, x))]
    losses = [step(opts[0], loss_fn(model(x), target))]
    for _ in range(spec.gamma if spec.method == "alternating" else 0):
        if not torch.isfinite(losses[-1]):
            break
        losses.append(step(opts[1], F.mse_loss(model.autoencoder(x), x)))
    return losses


def _scheduler(
    spec: TrainSpec, opt: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    if spec.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=spec.epochs)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def evaluate_model(spec: TrainSpec, model: nn.Module, dataset: Dataset) -> dict[str, float]:
    """Test-set figures: accuracy and loss for a classifier, MSE for an autoencoder."""
    model.eval()
    if spec.kind == "autoencoder":
        return {"test_mse": reconstruction_mse(model, dataset.x_test)}
    acc, loss = classifier_scores(model, dataset.x_test, dataset.y_test)
    scores = {"test_accuracy": acc, "test_loss": loss}
    if isinstance(model, LatentClassifier):  # how much the decoder still reconstructs
        scores["test_mse"] = reconstruction_mse(model.autoencoder, dataset.x_test)
    return scores


def fit(
    spec: TrainSpec,
    dataset: Dataset,
    device: torch.device,
    state: State | None = None,
    save_state: Callable[[State], None] | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int], None] | None = None,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train from scratch, or from ``state`` (a dict ``save_state`` received earlier).

    Returns the model in eval mode and the per-epoch history.
    """
    torch.manual_seed(spec.seed)
    model = build_model(spec.arch, **spec.arch_kwargs)
    # Every decoder starts at the mean pixel, the latent classifier's too: from a 0.5
    # start, decoders on dark data (MNIST) can collapse to a black image and stay there.
    ae = model.autoencoder if isinstance(model, LatentClassifier) else model
    if isinstance(ae, ConvAE):
        ae.init_output_bias(float(dataset.x_train.mean()))
    model.to(device)
    opts = _optimizers(spec, model)
    scheds = [_scheduler(spec, opt) for opt in opts]
    gen = torch.Generator().manual_seed(spec.seed)
    loss_fn = make_loss(spec.loss, **spec.loss_kwargs)
    history: list[dict[str, float]] = []
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        for obj, saved in zip([*opts, *scheds], [*state["optimizers"], *state["schedulers"]],
                              strict=True):
            obj.load_state_dict(saved)
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, start = list(state["history"]), int(state["epoch"])

    x, y = dataset.x_train, dataset.y_train
    n, bs = len(x), spec.batch_size
    per_epoch = -(-n // bs)
    bar = tqdm(total=spec.epochs * per_epoch, initial=start * per_epoch, disable=not progress,
               desc=spec.run_name, unit="batch", dynamic_ncols=True, leave=False)
    try:
        for epoch in range(start, spec.epochs):
            t0 = time.perf_counter()
            model.train()
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for b in range(per_epoch):
                idx = perm[b * bs : (b + 1) * bs]
                xb = x[idx]
                if spec.augment:
                    xb = random_crop_flip(xb, generator=gen)
                xb = xb.to(device, non_blocking=True)
                target = xb if spec.kind == "autoencoder" else y[idx].to(device)
                if spec.adversarial:
                    xb = adversarial_batch(spec, model, xb, target,
                                           seed=(spec.seed * 10_000 + epoch) * 100_000 + b,
                                           epochs_done=epoch + (b + 1) / per_epoch)
                loss = _steps(spec, model, opts, loss_fn, xb, target)[0]
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"{spec.run_name}: loss became {float(loss.detach())} at epoch "
                        f"{epoch + 1}, batch {b + 1}; try a lower learning rate (now {spec.lr})"
                    )
                total += float(loss.detach()) * len(idx)
                bar.update()
            for sched in scheds:
                sched.step()
            row = {"epoch": epoch + 1, "train_loss": total / n,
                   **evaluate_model(spec, model, dataset),
                   "seconds": time.perf_counter() - t0}
            history.append(row)
            bar.set_postfix({k: round(v, 4) for k, v in row.items() if k.startswith("test")})
            if save_state is not None:
                save_state({
                    "epoch": epoch + 1,
                    "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "optimizers": [opt.state_dict() for opt in opts],
                    "schedulers": [sched.state_dict() for sched in scheds],
                    "generator": gen.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "history": history,
                })
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1)
    finally:
        bar.close()
    return model.eval(), history
