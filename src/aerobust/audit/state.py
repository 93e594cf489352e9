"""Where an audit keeps its finished rungs, so that a killed audit resumes where it was.

A state folder holds one JSON file per finished rung (and one for the eps curve), each
written atomically the moment the rung ends, with the per-point results of the climb
so far. Every file carries the key of what produced it: the audit's settings, a digest
of the points, of the model's weights and of the code that computes the audit. A file
with another key is refused, never mixed in (a rung from another model would silently
decide points of this one); a file that does not parse (a disk that lost it) is moved
aside with one warning line and its rung is computed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import aerobust
from aerobust import atomic
from aerobust.code_version import closure, source_digest
from aerobust.errors import UserError

_LOG = logging.getLogger("aerobust.audit")


def _digest(chunks: list[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(len(chunk).to_bytes(8, "little") + chunk)
    return h.hexdigest()[:16]


def _tensor_bytes(t: Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    return f"{t.dtype}{tuple(t.shape)}".encode() + t.view(-1).view(torch.uint8).numpy().tobytes()


def model_digest(model: nn.Module) -> str:
    """The model's class and every weight and buffer, by name."""
    chunks = [type(model).__qualname__.encode()]
    for name, t in model.state_dict().items():
        chunks += [name.encode(), _tensor_bytes(t)]
    return _digest(chunks)


def code_digest() -> str:
    """aerobust's version and the code that computes an audit's numbers: the import
    closure of the audit (``aerobust.code_version``), as a cell's key counts it."""
    return f"{aerobust.__version__}+{source_digest(closure(['aerobust.audit.core']))}"


def state_key(settings: dict[str, Any], model: nn.Module, x: Tensor, y: Tensor
              ) -> dict[str, Any]:
    """What a state file must have been written for to be reused."""
    return {"settings": settings, "points": _digest([_tensor_bytes(x), _tensor_bytes(y)]),
            "model": model_digest(model), "code": code_digest(),
            "torch": str(torch.__version__)}


_WHAT = {"settings": "other settings", "points": "other points",
         "model": "another model (weights digest)", "code": "another code version",
         "torch": "another torch"}


class AuditState:
    """The state folder of one audit: ``load(name)`` a finished step's payload (None if
    not finished), ``save(name, payload)`` one as it finishes."""

    def __init__(self, folder: str | Path, key: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.key = json.loads(json.dumps(key))  # as a file holds it: tuples are lists
        self._done: dict[str, dict[str, Any]] = {}
        self.resumed: list[str] = []  # the steps ``load`` found finished
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"audit state {self.folder} is not a folder")
        for path in sorted(self.folder.glob("*.json")):
            try:
                saved = json.loads(path.read_text())
                name, payload, their_key = saved["name"], saved["payload"], saved["key"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                aside = path.with_name(path.name + ".unreadable")
                path.replace(aside)
                _LOG.warning("audit state %s does not parse (%s): moved to %s, that step "
                             "is computed again", path, type(exc).__name__, aside.name)
                continue
            if their_key != key:
                part = next(k for k in _WHAT if their_key.get(k) != key.get(k))
                raise UserError(f"audit state {path} was written for {_WHAT[part]}: not "
                                f"mixed in; give another folder or delete {self.folder}")
            self._done[name] = payload

    def load(self, name: str) -> Any:
        if name in self._done:
            self.resumed.append(name)
        return self._done.get(name)

    def save(self, name: str, payload: Any) -> None:
        atomic.write_text(self.folder / f"{name}.json",
                          json.dumps({"name": name, "key": self.key, "payload": payload}))
        self._done[name] = payload


def rng_for(seed: int, step: str) -> None:
    """Seed torch's generator (a random model's draws) for one step of the audit from
    the audit's seed and the step's name alone: a step computes the same numbers
    whether the steps before it ran in this process or were loaded from a state."""
    torch.manual_seed(int.from_bytes(hashlib.sha256(f"{seed}:{step}".encode()).digest()[:7],
                                     "little"))
