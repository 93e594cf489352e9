"""CIFAR-10 training augmentation, batched on tensors: no per-sample Python loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(
    x: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero-pad by ``padding``, crop back to HxW at a random offset per sample, and flip
    each sample horizontally with probability 1/2.

    One gather over the padded batch does all samples at once; the random draws are taken
    on the generator's device, so a given generator state always yields the same batch.
    """
    if x.ndim != 4:
        raise ValueError(f"expected (N,C,H,W), got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, c, h, w = x.shape
    gen_device = generator.device if generator is not None else torch.device("cpu")
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=gen_device)
    flip = torch.randint(0, 2, (n,), generator=generator, device=gen_device).bool()
    offsets, flip = offsets.to(x.device), flip.to(x.device)
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # (N,H)
    cols = torch.arange(w, device=x.device).expand(n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + offsets[1, :, None]  # (N,W)
    padded = F.pad(x, (padding, padding, padding, padding))
    return padded[
        torch.arange(n, device=x.device)[:, None, None, None],
        torch.arange(c, device=x.device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
