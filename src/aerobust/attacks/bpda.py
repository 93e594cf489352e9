"""Backward Pass Differentiable Approximation (Athalye, Carlini & Wagner 2018).

A defense whose preprocessing has no useful gradient (rounding, JPEG, median filters)
stops gradient attacks without being robust. BPDA keeps the forward exactly and
replaces the backward: identity (the preprocessing is close to ``x -> x``) or the
gradient of a differentiable ``approx`` of it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from aerobust.errors import UserError


class BPDA(nn.Module):
    """``module`` on the forward pass, ``approx`` (identity by default) on the backward.

    The output is ``module(x)`` to the last bit: ``out + (a - a.detach())`` adds an exact
    zero whose gradient is that of ``a = approx(x)``.
    """

    def __init__(self, module: nn.Module, approx: Callable[[Tensor], Tensor] | None = None
                 ) -> None:
        super().__init__()
        if approx is not None and not callable(approx):
            raise UserError(f"bpda: approx must be callable or None, got {approx!r}")
        self.module = module
        self.approx = approx

    def forward(self, x: Tensor) -> Tensor:
        out = self.module(x).detach()
        a = x if self.approx is None else self.approx(x)
        if a.shape != out.shape:
            what = "identity" if self.approx is None else "approx"
            raise UserError(f"bpda: the module maps {tuple(x.shape)} to {tuple(out.shape)}, "
                            f"but its {what} gives {tuple(a.shape)}; the backward needs the "
                            "same shape")
        return out + (a - a.detach())


def bpda(module: nn.Module, approx: Callable[[Tensor], Tensor] | None = None) -> BPDA:
    """``module`` with an identity (or ``approx``) backward pass; see ``BPDA``.

    BPDA (Athalye et al. 2018) attacks a defense whose gradient is useless (rounding,
    a stage run under ``no_grad``): the forward is the defense exactly, the backward a
    differentiable stand-in. The audit applies it to every stage its probes flag.

    Args:
        module: the stage to wrap; it must keep its input's shape when ``approx`` is None.
        approx: a differentiable function of the input whose gradient stands in for the
            module's; None: the identity.

    Returns:
        A ``BPDA`` module: output ``module(x)`` to the last bit, gradient that of
        ``approx(x)``.

    Example:
        >>> class Round(nn.Module):
        ...     def forward(self, v):
        ...         return (v * 7).round() / 7
        >>> v = torch.rand(2, 1, 28, 28, requires_grad=True)
        >>> aerobust.bpda(Round())(v).sum().backward()
        >>> bool((v.grad == 1).all())
        True
    """
    return BPDA(module, approx)
