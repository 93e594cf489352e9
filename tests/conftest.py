"""Shared fixtures: a tiny synthetic dataset and the path of the real MNIST test split."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from aerobust.data import Dataset
from aerobust.training import RunStore

# Every experiment at the smallest sizes that still exercise it.
TINY = ["--classifier-epochs", "1", "--ae-epochs", "1", "--pgd-steps", "2", "--n", "12",
        "--masking-n", "8", "--masking-pgd-steps", "2", "--eps", "20,80", "--eps-sweep", "0,40",
        "--lambdas", "0,1", "--gammas", "0,1", "--n-cw", "4", "--cw-steps", "5",
        "--cw-binary-steps", "2", "--audit-budget", "quick", "--audit-l2-eps", "2"]
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def make_dataset(n_train: int = 96, n_test: int = 48, channels: int = 1, size: int = 28,
                 classes: int = 3, seed: int = 0) -> Dataset:
    """Classes told apart by which horizontal band of the image is bright: learnable fast."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % classes
        x = 0.2 * torch.rand(n, channels, size, size, generator=g)
        band = size // classes
        for c in range(classes):
            x[y == c, :, c * band : (c + 1) * band, :] += 0.6
        return x.clamp(0, 1), y

    xtr, ytr = split(n_train)
    xte, yte = split(n_test)
    digest = hashlib.sha256(xtr.numpy().tobytes() + xte.numpy().tobytes()).hexdigest()
    return Dataset(name="synthetic", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte,
                   num_classes=classes, checksum=f"sha256:{digest}")


def process_tree() -> dict[int, list[int]]:
    """Each live process's children, by parent pid (from /proc): which processes a test
    started, and whether they are gone."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def reproduce_args(tiny_npz: str, out: Path, store: Path, *extra: str) -> list[str]:
    """``aerobust reproduce`` of every experiment at the TINY sizes on ``tiny_npz``."""
    return ["reproduce", "--preset", "mnist", "--dataset", tiny_npz, "--out", str(out),
            "--store", str(store), "--quiet", *TINY, *extra]


@pytest.fixture
def tiny_dataset() -> Dataset:
    return make_dataset()


@pytest.fixture
def mnist_dir() -> Path:
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("the MNIST test split is not in ../shared/data/mnist")
    return SHARED_MNIST


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and two OpenMP threads on two busy cores
    make every op ~100x slower; restored so other tests are unaffected."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fit_by_gradient_descent(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                            steps: int, lr: float = 0.5) -> nn.Module:
    """Full-batch gradient descent on CE: fast, because ``torch.optim`` would import
    ``torch._dynamo``, which costs seconds."""
    params = list(model.parameters())
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        with torch.no_grad():
            for param, grad in zip(params, torch.autograd.grad(loss, params), strict=True):
                param -= lr * grad
    return model


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 4-class synthetic dataset (48 train / 12 test) as ``npz:PATH``, once per module."""
    ds = make_dataset(n_train=48, n_test=12, classes=4)
    path = tmp_path_factory.mktemp("data") / "d.npz"
    np.savez(path, x_train=ds.x_train.numpy(), y_train=ds.y_train.numpy(),
             x_test=ds.x_test.numpy(), y_test=ds.y_test.numpy())
    return f"npz:{path}"


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    """One store for a module: every model trains once and is shared, as in use."""
    return RunStore(tmp_path_factory.mktemp("store"))
