"""The attacked model as attacks see it: a wrapper that counts batched passes and
averages over random draws (EOT), and the mode the model is attacked in. Below the
attack interface (``base``) and the runner, which both use it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from aerobust.rejection import fooled as wrong_class
from aerobust.rejection import rejects


class Step:
    """One evaluation of a loss at an input (see ``CountedModel.step``): ``logits``
    (N, C; the mean over the draws of a randomised model), per-sample ``loss`` (the mean
    over the draws), ``fooled`` (argmax != y; a majority of the draws with EOT), and
    ``grad``, the input gradient of the summed loss, computed (and counted) only when
    read: an attack that learns from the forward that every sample is fooled skips it.
    """

    def __init__(self, model: CountedModel, x_var: Tensor, total: Tensor, logits: Tensor,
                 loss: Tensor, fooled: Tensor) -> None:
        self._model, self._x_var, self._total = model, x_var, total
        self.logits, self.loss, self.fooled = logits, loss, fooled

    @functools.cached_property
    def grad(self) -> Tensor:
        grad = self._model.grad(self._total, self._x_var)
        del self._total  # frees the graph
        return grad


class CountedModel:
    """The attacked model with a tally of batched passes.

    Attacks only reach the model through this wrapper, so the counts in
    ``AttackResult`` are measured rather than estimated. It is also where Expectation
    over Transformation lives (Athalye et al. 2018): with ``draws = k > 1`` the model is
    random, every forward is ``k`` forwards (counted as ``k`` passes), ``step`` averages
    the loss and its gradient over them, ``__call__`` returns the mean logits, and a
    sample counts fooled when a majority of the draws misclassify it.
    """

    def __init__(self, model: nn.Module, draws: int = 1) -> None:
        self.model = model
        self.draws = draws
        self.rejects = rejects(model)  # a rejected input is not fooled (``rejection``)
        self.forwards = 0
        self.backwards = 0

    def __call__(self, x: Tensor) -> Tensor:
        self.forwards += self.draws
        if self.draws == 1:
            return self.model(x)
        return torch.stack([self.model(x) for _ in range(self.draws)]).mean(dim=0)

    def grad(self, output: Tensor, inputs: Tensor, retain_graph: bool = False) -> Tensor:
        """Gradient of a scalar ``output`` w.r.t. the input only (never the parameters);
        zero where the model's output does not depend on the input through autograd, as
        a defense run under ``no_grad`` makes it: gradient attacks then fail, as they
        would, and the audit's probes say why."""
        self.backwards += 1
        if not output.requires_grad:  # the model cut x off its graph (no_grad, detach)
            return torch.zeros_like(inputs)
        (g,) = torch.autograd.grad(output, inputs, retain_graph=retain_graph, allow_unused=True)
        return torch.zeros_like(inputs) if g is None else g

    def step(self, x: Tensor, y: Tensor, loss: Callable[[Tensor, Tensor], Tensor]) -> Step:
        """Per-sample ``loss(logits, y)`` at ``x`` and its input gradient, averaged over
        the draws: k separate forwards (a defense may draw its randomness once per call)
        and, when ``grad`` is read, one backward through all of them."""
        x_var = x.detach().requires_grad_(True)
        outs = [self.model(x_var) for _ in range(self.draws)]
        self.forwards += self.draws
        losses = torch.stack([loss(out, y) for out in outs])
        total = losses.sum() / self.draws if self.draws > 1 else losses.sum()
        with torch.no_grad():
            wrong = torch.stack([wrong_class(out, y, self.rejects) for out in outs])
            fooled = wrong[0] if self.draws == 1 else 2 * wrong.sum(dim=0) > self.draws
            logits = outs[0] if self.draws == 1 else torch.stack(outs).mean(dim=0)
        return Step(self, x_var, total, logits.detach(), losses.detach().mean(dim=0), fooled)

    @torch.no_grad()
    def fooled(self, x: Tensor, y: Tensor) -> Tensor:
        """Whether ``x`` is misclassified: by a majority of the draws with EOT."""
        self.forwards += self.draws
        wrong = sum(wrong_class(self.model(x), y, self.rejects).int()
                    for _ in range(self.draws))
        return 2 * wrong > self.draws


@contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters for the duration of an attack.

    Train-mode dropout or batch norm would make the attacked function random and let it
    drift (running statistics), and parameter gradients cost memory for nothing. Each
    module's ``training`` flag and each parameter's ``requires_grad`` are restored
    exactly, also when the attack raises, so attacking mid-training is harmless.
    """
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    # Only flags that differ are written (``nn.Module.__setattr__`` is slow, and this
    # runs on every batch): a model already in eval mode, frozen, is left untouched.
    try:
        if any(mode for _, mode in modes):
            model.eval()
        for param, flag in flags:
            if flag:
                param.requires_grad_(False)
        yield model
    finally:
        for module, mode in modes:
            if module.training != mode:
                module.training = mode
        for param, flag in flags:
            if param.requires_grad != flag:
                param.requires_grad_(flag)
