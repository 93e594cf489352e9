"""The checkpoint format: plain tensors and JSON-like values only, so loading uses
``torch.load(weights_only=True)`` and never executes code from the file."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aerobust import atomic
from aerobust.errors import CheckpointError
from aerobust.models.registry import MODELS, build_model, model_kind

FORMAT = "aerobust-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, model: nn.Module, arch: str,
                    arch_kwargs: dict[str, Any], **extra: Any) -> None:
    """Write weights plus what is needed to rebuild the model, atomically."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "kind": model_kind(arch),
        "arch_kwargs": arch_kwargs,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    atomic.torch_save(payload, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint; any problem is one CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused: the file holds pickled objects that are not plain weights "
            "(aerobust never executes code from a checkpoint)"
        ) from exc
    except Exception as exc:  # torch's unpickler raises anything (KeyError on a text file)
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt, truncated, or "
                              f"not a checkpoint: {type(exc).__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an aerobust checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('format_version')}, "
            f"this aerobust reads version {FORMAT_VERSION}"
        )
    if payload.get("arch") not in MODELS:
        raise CheckpointError(f"{path}: unknown architecture {payload.get('arch')!r}")
    return payload


def load_model(path: str | Path, kind: str | None = None, arch: str | None = None,
               device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model a checkpoint describes, in eval mode.

    ``kind`` ("classifier" or "autoencoder") and ``arch`` state what the caller
    expects, so that e.g. an autoencoder passed as ``--classifier`` is a clear error.

    Args:
        path: a ``model.pt`` written by aerobust's training, or its run folder. It is
            read with ``torch.load(weights_only=True)``: pickled objects are refused.
        kind: the kind the caller expects (``"classifier"`` or ``"autoencoder"``), or
            None for either.
        arch: the architecture the caller expects (``"lenet5"``, ``"conv-ae"``, ...), or
            None for any.
        device: where the weights go.

    Returns:
        The ``nn.Module``, in eval mode, taking [0,1] images. A classifier returns
        logits, an autoencoder images.

    Example:
        >>> classifier = aerobust.load_model(checkpoint, kind="classifier")
        >>> classifier(x).shape
        torch.Size([8, 10])
    """
    payload = read_checkpoint(path)
    have = payload["arch"]
    if kind is not None and payload["kind"] != kind:
        raise CheckpointError(f"{path}: holds a {payload['kind']} ({have}), not a {kind}")
    if arch is not None and have != arch:
        raise CheckpointError(f"{path}: holds architecture {have}, not {arch}")
    model = build_model(have, **payload["arch_kwargs"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit architecture {have}: {first}") from exc
    return model.to(device).eval()
