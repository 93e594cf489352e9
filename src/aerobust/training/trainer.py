"""The training loop: one function for classifiers and autoencoders, resumable to the
bit from a saved state (model, optimizer, schedule and every random generator)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from aerobust.data import Dataset, random_crop_flip
from aerobust.errors import UserError
from aerobust.metrics import classifier_scores, reconstruction_mse
from aerobust.models import ConvAE, build_model
from aerobust.training.losses import make_loss
from aerobust.training.spec import TrainSpec

State = dict[str, Any]


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the settings (usually the learning rate) are off."""


def _optimizer(spec: TrainSpec, model: nn.Module) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum,
                               weight_decay=spec.weight_decay, nesterov=spec.momentum > 0)
    return torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)


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
    return {"test_accuracy": acc, "test_loss": loss}


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
    if isinstance(model, ConvAE):
        model.init_output_bias(float(dataset.x_train.mean()))
    model.to(device)
    opt = _optimizer(spec, model)
    sched = _scheduler(spec, opt)
    gen = torch.Generator().manual_seed(spec.seed)
    loss_fn = make_loss(spec.loss, **spec.loss_kwargs)
    history: list[dict[str, float]] = []
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
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
                loss = loss_fn(model(xb), target)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"{spec.run_name}: loss became {float(loss.detach())} at epoch "
                        f"{epoch + 1}, batch {b + 1}; try a lower learning rate (now {spec.lr})"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                bar.update()
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
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "generator": gen.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "history": history,
                })
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1)
    finally:
        bar.close()
    return model.eval(), history
