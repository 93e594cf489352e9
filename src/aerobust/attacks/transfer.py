"""Black-box transfer attacks: craft adversarial examples on a substitute model with any
white-box attack, then score them on the target, which is never differentiated.

A defense that only masks gradients stops white-box attacks but not adversarials made on
a model it does not mask (Papernot et al. 2017); the paper's Table 2 and Fig. 2 (bottom
row) use transfer for that check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from aerobust.attacks.base import Attack, attack_mode
from aerobust.attacks.evaluate import Evaluation, evaluate
from aerobust.attacks.runner import Execution
from aerobust.data import Dataset
from aerobust.errors import UserError


@dataclass
class Transfer:
    """Adversarials crafted on a substitute, scored on a target.

    ``accuracy`` counts a sample robust when the target classifies it correctly both
    clean and at the adversarial, the definition ``evaluate`` uses, so a transfer from a
    model onto itself reproduces the white-box robust accuracy. ``substitute_accuracy`` is
    the substitute's own (white-box) robust accuracy on the adversarials it crafted: a
    transfer is only as strong as the attack on the substitute. ``forwards``/``backwards``
    are the substitute's attack passes; ``target_forwards`` the target's batched passes.
    ``execution`` is what the attack on the substitute ran under (``Evaluation``'s).
    """

    attack: str
    params: dict[str, Any]
    execution: dict[str, Any]
    n: int
    clean_accuracy: float
    accuracy: float
    substitute_clean_accuracy: float
    substitute_accuracy: float
    seconds: float
    forwards: int
    backwards: int
    target_forwards: int
    robust: Tensor  # per sample (bool, on the CPU): the target right clean and attacked

    def to_dict(self) -> dict[str, Any]:
        """Plain values; ``robust`` as the indices of the robust samples."""
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        row["robust"] = self.robust.nonzero().flatten().tolist()
        return row


def craft(substitute: nn.Module, x: Tensor, y: Tensor, attack: Attack, batch_size: int = 256,
          progress: bool = False, execution: Execution | None = None) -> Evaluation:
    """The white-box attack on the substitute under ``execution``, adversarials kept (on
    the CPU, in order).

    Craft once and score on several targets with ``score``: the expensive half is here.
    """
    return evaluate(substitute, x, y, attack, batch_size=batch_size, progress=progress,
                    keep_adversarials=True, execution=execution)


@torch.no_grad()
def score(target: nn.Module, crafted: Evaluation, x: Tensor, y: Tensor,
          batch_size: int = 256) -> Transfer:
    """Accuracy of ``target`` on the adversarials in ``crafted`` (made from ``x``, ``y``)."""
    x_adv = crafted.adversarials
    if x_adv is None:
        raise UserError("transfer: the crafted evaluation kept no adversarials "
                        "(use craft(), or evaluate(..., keep_adversarials=True))")
    if x_adv.shape != x.shape or len(y) != len(x):
        raise UserError(f"transfer: {tuple(x_adv.shape)} adversarials for "
                        f"{tuple(x.shape)} images and {len(y)} labels")
    device = next((p.device for p in target.parameters()), x.device)
    start = time.perf_counter()
    clean, robust, passes = [], [], 0
    with attack_mode(target):
        for i in range(0, len(x), batch_size):
            yb = y[i : i + batch_size].to(device)
            both = torch.cat([x[i : i + batch_size], x_adv[i : i + batch_size]]).to(device)
            pred = target(both).argmax(dim=1)  # clean and adversarial in one pass
            passes += 1
            correct, fooled = (pred[: len(yb)] == yb), (pred[len(yb) :] != yb)
            clean.append(correct.cpu())
            robust.append((correct & ~fooled).cpu())
    return Transfer(
        attack=crafted.attack,
        params=dict(crafted.params),
        execution=dict(crafted.execution),
        n=len(x),
        clean_accuracy=torch.cat(clean).double().mean().item(),
        accuracy=torch.cat(robust).double().mean().item(),
        substitute_clean_accuracy=crafted.clean_accuracy,
        substitute_accuracy=crafted.robust_accuracy,
        seconds=crafted.seconds + time.perf_counter() - start,
        forwards=crafted.forwards,
        backwards=crafted.backwards,
        target_forwards=passes,
        robust=torch.cat(robust),
    )


def transfer(substitute: nn.Module, target: nn.Module, x: Tensor, y: Tensor, attack: Attack,
             batch_size: int = 256, progress: bool = False,
             execution: Execution | None = None) -> Transfer:
    """Attack ``substitute`` white-box with ``attack`` (under ``execution``) and score the
    result on ``target``."""
    crafted = craft(substitute, x, y, attack, batch_size=batch_size, progress=progress,
                    execution=execution)
    return score(target, crafted, x, y, batch_size=batch_size)


def relabelled(dataset: Dataset, y_train: Tensor, source: str) -> Dataset:
    """``dataset`` with its training labels replaced by ``y_train`` (a target model's
    predictions), to train a substitute that imitates the target rather than the truth.

    The test labels stay true, so the substitute's recorded test accuracy means what it
    always means. The checksum derives from the original one and ``source`` (the target's
    run name(s)), so substitutes trained on different labels never share a run.
    """
    if y_train.shape != dataset.y_train.shape:
        raise UserError(f"relabel: {tuple(y_train.shape)} labels for "
                        f"{len(dataset.y_train)} training images")
    digest = hashlib.sha256(f"{dataset.checksum}|labels-of:{source}".encode()).hexdigest()
    return dataclasses.replace(dataset, y_train=y_train.to(torch.int64).cpu(),
                               checksum=f"sha256:{digest}")
