import pytest
import torch
import torch.nn.functional as F

from aerobust.data import random_crop_flip


def _batch(n: int = 16, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(1))


def _reference(x: torch.Tensor, padding: int, seed: int) -> torch.Tensor:
    """The obvious per-sample loop over the same random draws, to check the batched gather."""
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=g)
    flip = torch.randint(0, 2, (n,), generator=g).bool()
    padded = F.pad(x, (padding,) * 4)
    out = []
    for i in range(n):
        oy, ox = int(offsets[0, i]), int(offsets[1, i])
        crop = padded[i, :, oy : oy + h, ox : ox + w]
        out.append(crop.flip(-1) if flip[i] else crop)
    return torch.stack(out)


@pytest.mark.parametrize(
    ("padding", "shape"), [(4, (16, 3, 8, 8)), (2, (9, 1, 5, 7)), (0, (8, 3, 4, 4))]
)
def test_matches_per_sample_reference(padding: int, shape: tuple) -> None:
    x = _batch(*shape)
    out = random_crop_flip(x, padding, torch.Generator().manual_seed(7))
    assert out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous()
    assert torch.equal(out, _reference(x, padding, 7))


def test_deterministic_given_generator_and_varied() -> None:
    x = _batch(64)
    a = random_crop_flip(x, generator=torch.Generator().manual_seed(3))
    b = random_crop_flip(x, generator=torch.Generator().manual_seed(3))
    c = random_crop_flip(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, x)
    assert random_crop_flip(x).shape == x.shape  # global RNG when no generator


def test_padding_zero_only_flips() -> None:
    x = _batch(32)
    out = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert torch.all(same | flipped) and same.any() and flipped.any()


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="N,C,H,W"):
        random_crop_flip(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="padding"):
        random_crop_flip(torch.zeros(1, 1, 8, 8), padding=-1)
