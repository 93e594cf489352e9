"""Run an attack over a whole dataset in batches and summarise it."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from aerobust.attacks.base import Attack, attack_mode
from aerobust.attacks.judgment import describe, fooled, judge_draws
from aerobust.attacks.runner import Execution
from aerobust.errors import UserError
from aerobust.rejection import rejected, rejects


@dataclass
class Evaluation:
    """Summary of one attack on one model.

    A sample is robust when it is classified correctly both clean and at ``x_adv``.
    Perturbation statistics cover the samples the attack turned from correct to wrong
    (an already misclassified input needs no perturbation and would drag them towards
    0); they are ``None`` when there is no such sample. ``forwards``/``backwards`` are
    the attack's batched passes; the clean-accuracy forward is not counted.
    For a model that rejects inputs (``aerobust.rejection``) a rejected clean input is an
    error, a rejected adversarial is robust, and ``false_positive_rate`` is the share of
    clean inputs rejected (None for a model that never rejects).
    ``execution`` is what ran (``Execution.record``: block_size, channels_last, device),
    every default resolved. ``judgment`` says how a prediction was judged, clean and
    attacked (``attacks.judgment``: one forward, or for a randomised model a majority of
    fresh forwards).
    """

    attack: str
    params: dict[str, Any]
    execution: dict[str, Any]
    n: int
    clean_accuracy: float
    robust_accuracy: float
    median_l2: float | None
    mean_l2: float | None
    median_linf: float | None
    seconds: float
    images_per_second: float
    forwards: int
    backwards: int
    robust: Tensor  # per sample (bool, on the CPU): correct both clean and attacked
    adversarials: Tensor | None = None
    false_positive_rate: float | None = None
    judgment: str = describe(1)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (the adversarial examples are left out)."""
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del row["adversarials"], row["robust"]
        row["params"] = dict(self.params)
        row["execution"] = dict(self.execution)
        return row


def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: Attack,
    batch_size: int = 256,
    progress: bool = False,
    keep_adversarials: bool = False,
    execution: Execution | None = None,
) -> Evaluation:
    """Attack ``x`` (in [0,1]) batch by batch on the model's device, under ``execution``
    (the default policy when None).

    The data may stay on the CPU: each batch moves to the device of the model's
    parameters (x's own device for a parameterless model). With ``keep_adversarials``
    the adversarial examples come back on the CPU, in the order of ``x``. The policy is
    resolved once for the largest batch, and every batch runs under that resolved one,
    so the record is what ran. A randomised model is judged as everywhere in the tool
    (``attacks.judgment``), whatever the attack's own EOT.

    Args:
        model: any ``nn.Module`` mapping [0,1] images to logits.
        x: the images (N, ...) in [0,1].
        y: their labels (N,).
        attack: an ``Attack`` (``attacks.get`` or a class of ``aerobust.attacks``).
        batch_size: images per call of the attack.
        progress: show a progress bar.
        keep_adversarials: return the adversarial examples too.
        execution: how the attack runs (``Execution``); None: the defaults.

    Returns:
        An ``Evaluation``: ``clean_accuracy`` and ``robust_accuracy`` (correct both clean
        and attacked) as fractions, median and mean L2 of the perturbations that flipped
        a correct prediction, per-sample ``robust``, seconds, passes, and the resolved
        ``params`` and ``execution``.

    Example:
        >>> result = aerobust.evaluate(model, x, y, aerobust.attacks.FGSM(eps=8 / 255))
        >>> result.robust_accuracy <= result.clean_accuracy
        True
    """
    if len(x) != len(y) or len(x) == 0:
        raise UserError(f"evaluate: need as many labels as images (>0), got {len(x)} and {len(y)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"evaluate: batch_size must be an integer >= 1, got {batch_size!r}")
    device = next((p.device for p in model.parameters()), x.device)
    largest = min(batch_size, len(x))
    policy = (execution or Execution()).resolve(largest, device)
    clean, robust, l2, linf, kept, refused = [], [], [], [], [], []
    draws = 0  # the judgment's forwards, decided on the first batch
    rejecting = rejects(model)
    forwards = backwards = 0
    start = time.perf_counter()
    with attack_mode(model), tqdm(
        total=len(x), desc=attack.name, unit="img", disable=not progress, leave=False,
        dynamic_ncols=True,
    ) as bar:
        for begin in range(0, len(x), batch_size):
            xb = x[begin : begin + batch_size].to(device)
            yb = y[begin : begin + batch_size].to(device)
            draws = draws or judge_draws(model, xb)
            correct = ~fooled(model, xb, yb, draws, clean=True)
            if rejecting:
                with torch.no_grad():
                    refused.append(rejected(model(xb)).cpu())
            result = attack(model, xb, yb, execution=policy)
            forwards += result.forwards
            backwards += result.backwards
            success = result.success if draws == 1 else fooled(model, result.x_adv, yb, draws)
            flipped = correct & success
            clean.append(correct.cpu())
            robust.append((correct & ~success).cpu())
            l2.append(result.l2[flipped].cpu())
            linf.append(result.linf[flipped].cpu())
            if keep_adversarials:
                kept.append(result.x_adv.cpu())
            bar.update(len(xb))
    seconds = time.perf_counter() - start
    flipped_l2, flipped_linf = torch.cat(l2).double(), torch.cat(linf).double()
    any_flipped = len(flipped_l2) > 0
    return Evaluation(
        attack=attack.name,
        params=attack.params(),
        execution=policy.record(largest, device),
        n=len(x),
        clean_accuracy=torch.cat(clean).double().mean().item(),
        robust_accuracy=torch.cat(robust).double().mean().item(),
        median_l2=flipped_l2.quantile(0.5).item() if any_flipped else None,
        mean_l2=flipped_l2.mean().item() if any_flipped else None,
        median_linf=flipped_linf.quantile(0.5).item() if any_flipped else None,
        seconds=seconds,
        images_per_second=len(x) / seconds,
        forwards=forwards,
        backwards=backwards,
        robust=torch.cat(robust),
        adversarials=torch.cat(kept) if keep_adversarials else None,
        false_positive_rate=(torch.cat(refused).double().mean().item() if rejecting
                             else None),
        judgment=describe(draws),
    )
