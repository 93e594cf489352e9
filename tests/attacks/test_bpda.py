"""``bpda``: the module's output on the forward pass, to the last bit; the identity's (or
``approx``'s) gradient on the backward; one-line errors for what cannot work."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aerobust.attacks.bpda import bpda
from aerobust.errors import UserError


class Round(nn.Module):
    """A quantiser: gradient zero almost everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 7) / 7


class Shrink(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., ::2, ::2]


def _input_grad(module: nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((module(x) * w).sum(), x)
    return grad


def test_forward_is_the_module_to_the_last_bit() -> None:
    x = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    out = bpda(Round())(x)
    assert torch.equal(out, torch.round(x * 7) / 7)
    assert not torch.equal(out, x)


@pytest.mark.parametrize("approx,factor", [(None, 1.0), (lambda v: 3 * v, 3.0)])
def test_backward_is_that_of_the_identity_or_approx(approx, factor: float) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 5, 5, generator=gen)
    w = torch.randn(3, 1, 5, 5, generator=gen)
    assert torch.equal(_input_grad(Round(), x, w), torch.zeros_like(x))  # what BPDA fixes
    assert torch.allclose(_input_grad(bpda(Round(), approx), x, w), factor * w)


def test_no_gradient_reaches_the_module_parameters() -> None:
    """The forward is detached: the module's own weights get no gradient through it."""
    conv = nn.Conv2d(1, 1, 3, padding=1)
    x = torch.rand(2, 1, 5, 5, requires_grad=True)
    bpda(conv)(x).sum().backward()
    assert conv.weight.grad is None and torch.equal(x.grad, torch.ones_like(x))


def test_errors() -> None:
    with pytest.raises(UserError, match="approx must be callable"):
        bpda(Round(), approx=3)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="identity gives"):
        bpda(Shrink())(torch.rand(2, 1, 6, 6))
    with pytest.raises(UserError, match="approx gives"):
        bpda(Round(), approx=lambda v: v[..., :3, :3])(torch.rand(2, 1, 6, 6))
