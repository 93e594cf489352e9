"""Multi-class DeepFool (Moosavi-Dezfooli et al. 2016), batched over samples."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from aerobust.attacks.base import Attack, CountedModel, batch_view, check_number
from aerobust.errors import UserError
from aerobust.rejection import fooled as wrong_class

CLIPS = ("step", "end", "none")
JUDGES = ("returned", "iterate")


@dataclass(frozen=True)
class DeepFool(Attack):
    """Step to the nearest linearised decision boundary until the prediction changes.

    A sample the model already misclassifies is adversarial as it is: it keeps its input
    and counts as a success (moving it on could carry it back to its label). For the
    others the reference class is the clean prediction (which is the label) and the
    candidates are the ``num_classes`` top classes of the clean logits (default: all).
    Each iteration linearises ``f_k = Z_k - Z_ref`` at the current iterate, picks the
    candidate with the smallest ``|f_k| / ||grad f_k||`` and adds ``r = (|f_k| + margin)
    / ||grad f_k||^2 * grad f_k`` to the total perturbation ``r_tot``; the iterate is
    ``x + (1 + overshoot) * r_tot`` (overshoot on the total, as the authors' code).
    ``r_tot`` is kept where that iterate lies in [0,1]: the part of a step that the box
    cuts off is dropped rather than carried on, so a later step that turns a pixel back
    acts at once instead of first undoing a push beyond 0 or 1 that never took effect.
    ``margin`` (in logits) makes a step cross the linearised boundary rather than land
    on it. A sample whose prediction changed is frozen and drops out of the batch: after
    the forward pass that shows it finished, it costs nothing. Success means the final
    prediction differs from the label. Against a model that rejects
    (``aerobust.rejection``) the candidates are the classes only and a rejected iterate
    is not done: DeepFool knows no detector, so the audit's adaptive loss is the attack
    to run on one.

    ``clip`` says where the box [0,1] applies: ``"step"`` (default) at every iterate, as
    above; ``"end"``: the iterates move freely (``r_tot`` accumulates every step whole)
    and only the returned ``x_adv`` is clipped; ``"none"``: never, as in the authors'
    reference code, which knows no box (``x_adv`` can leave [0,1]). ``judge`` says, when
    clipping only at the end, which image decides success: ``"returned"`` (default) the
    clipped ``x_adv`` (one forward more), ``"iterate"`` the last unclipped iterate the
    loop stopped on, as a fooling rate counted inside the loop reports it. With
    ``"step"`` or ``"none"`` the two are the same image.

    Cost per iteration: one forward and ``num_classes - 1`` backward passes (one per
    candidate, each for all active samples at once, differentiating ``Z_k - Z_ref``
    directly); at most ``steps + 1`` forwards and ``steps * (num_classes - 1)`` backwards
    per block.

    The K-1 vector-Jacobian products could also run as one vmapped backward
    (``torch.autograd.grad(..., is_grads_batched=True)`` or ``torch.func.vmap`` of a
    ``vjp``): same gradients (bit-identical here), but on CPU both measured slower than
    the loop over candidates with a retained graph, on LeNet5 and more so on AE-C.
    ``benchmarks/attacks.py`` re-measures the three on every run (figures in
    ``benchmarks/results/attacks.md``).

    Args:
        steps: the most linearisation steps per sample.
        overshoot: the factor by which the total perturbation is pushed past the boundary.
        num_classes: candidate classes (the top ones of the clean logits); None: all.
        margin: logits added to each step so that it crosses the linearised boundary.
        eot: forwards averaged per step, for a randomised model (every attack has it).

    Returns:
        ``deepfool(model, x, y, execution=None)`` on a batch in [0,1] returns an ``AttackResult``.

    Example:
        >>> deepfool = aerobust.attacks.DeepFool(steps=20)
        >>> result = deepfool(model, x, y)
        >>> result.success.dtype
        torch.bool
    """

    name = "deepfool"
    steps: int = 50
    overshoot: float = 0.02
    num_classes: int | None = None
    margin: float = 1e-4
    clip: str = "step"
    judge: str = "returned"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self.name, "steps", self.steps, 1, integer=True)
        check_number(self.name, "overshoot", self.overshoot, 0.0)
        if self.num_classes is not None:
            check_number(self.name, "num_classes", self.num_classes, 2, integer=True)
        check_number(self.name, "margin", self.margin, 0.0)
        for name, allowed in (("clip", CLIPS), ("judge", JUDGES)):
            if getattr(self, name) not in allowed:
                raise UserError(f"{self.name}: {name} must be one of {', '.join(allowed)}, "
                                f"got {getattr(self, name)!r}")

    def _attack(
        self, model: CountedModel, x: Tensor, y: Tensor, draws: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        scale = 1 + self.overshoot
        box = self.clip == "step"
        r_tot = torch.zeros_like(x)
        prediction = torch.empty_like(y)
        active = torch.arange(len(y), device=x.device)
        ranking = torch.empty(0)  # set from the clean logits at step 0
        for step in range(self.steps + 1):
            last = step == self.steps
            current = x[active] + scale * r_tot[active]
            if box:
                current = torch.clamp(current, 0.0, 1.0)
            current.requires_grad_(not last)
            with torch.set_grad_enabled(not last):
                logits = model(current)
            predicted = logits.argmax(dim=1)
            prediction[active] = predicted
            if step == 0:
                ranking = self._candidates(logits[:, :-1] if model.rejects else logits)
            # Active samples are predicted as their label (or rejected) until fooled.
            still = ~wrong_class(logits, y[active], model.rejects)
            if last or not bool(still.any()):
                break
            r = self._step(model, current, logits, ranking[active])[still]
            active = active[still]
            if not box:
                r_tot[active] += r
                continue
            base = x[active]
            moved = torch.clamp(base + scale * (r_tot[active] + r), 0.0, 1.0)
            r_tot[active] = (moved - base) / scale
        x_adv = x + scale * r_tot
        fooled = prediction != y
        if model.rejects:
            fooled &= prediction != logits.shape[1] - 1
        if self.clip == "none":
            return x_adv, fooled
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
        # Clipped only now: the last iterate's prediction says nothing of x_adv's.
        judged_here = box or self.judge == "iterate"
        return x_adv, fooled if judged_here else None

    def _candidates(self, clean_logits: Tensor) -> Tensor:
        """Classes ranked by clean logit, the prediction first (stable: same as argmax)."""
        k = clean_logits.shape[1]
        count = k if self.num_classes is None else self.num_classes
        if count > k:
            raise UserError(f"deepfool: num_classes={count} but the model has {k} classes")
        return clean_logits.argsort(dim=1, descending=True, stable=True)[:, :count]

    def _step(
        self, model: CountedModel, current: Tensor, logits: Tensor, ranking: Tensor
    ) -> Tensor:
        """The step towards the closest linearised boundary, for every row of ``current``."""
        reference = logits.gather(1, ranking[:, :1]).squeeze(1)
        best_ratio = torch.full_like(reference, torch.inf)
        best_step = torch.zeros_like(current)
        count = ranking.shape[1]
        for k in range(1, count):
            f = logits.gather(1, ranking[:, k : k + 1]).squeeze(1) - reference
            w = model.grad(f.sum(), current, retain_graph=k < count - 1)
            norm = w.flatten(1).norm(dim=1).clamp_min(1e-12)
            gap = f.detach().abs()
            ratio = gap / norm
            closer = ratio < best_ratio
            best_ratio = torch.where(closer, ratio, best_ratio)
            size = (gap + self.margin) / norm.square()
            best_step = torch.where(batch_view(closer, current), batch_view(size, w) * w, best_step)
        return best_step
