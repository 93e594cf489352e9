"""White-box attacks: ``attack(model, x, y) -> AttackResult``, all untargeted in [0,1].

Build one by name with ``get("pgd", eps=8/255)``; run it over a dataset with
``evaluate``, or craft on a substitute and score on a target with ``transfer``. How it
runs (blocks, NHWC) is an ``Execution`` passed to the call, ``evaluate`` or the audit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aerobust.attacks.apgd import APGD
from aerobust.attacks.base import Attack, AttackResult, attack_mode
from aerobust.attacks.bpda import BPDA, bpda
from aerobust.attacks.cw import CW
from aerobust.attacks.deepfool import DeepFool
from aerobust.attacks.evaluate import Evaluation, evaluate
from aerobust.attacks.fab import FAB
from aerobust.attacks.fgsm import FGSM
from aerobust.attacks.pgd import PGD
from aerobust.attacks.runner import CPU_BLOCK_SIZE, Execution
from aerobust.attacks.square import Square
from aerobust.attacks.transfer import Transfer, craft, relabelled, score, transfer
from aerobust.errors import UserError

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (FGSM, PGD, CW, DeepFool, APGD, Square, FAB)
}


def get(name: str, **params: Any) -> Attack:
    """The attack called ``name``, configured with ``params`` (validated).

    Args:
        name: one of ``ATTACKS``: ``fgsm``, ``pgd``, ``cw``, ``deepfool``, ``apgd``,
            ``square`` (any case).
        **params: the attack's parameters (its dataclass fields; eps in [0,1] units).
            Unknown or missing ones raise a ``UserError`` naming the known ones.

    Returns:
        The configured ``Attack``: call it as ``attack(model, x, y)`` for an
        ``AttackResult``, or pass it to ``evaluate``.

    Example:
        >>> pgd = aerobust.attacks.get("pgd", eps=8 / 255, steps=10)
        >>> round(pgd.params()["step_size"] * 255, 3)  # the default: 2.5 * eps / steps
        2.0
    """
    cls = ATTACKS.get(name.lower())
    if cls is None:
        raise UserError(f"unknown attack {name!r}; known attacks: {', '.join(ATTACKS)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    # Once attack fields: say where they went rather than that they do not exist.
    settings = [p for p in unknown if p in {f.name for f in dataclasses.fields(Execution)}]
    if settings:
        what = ("is an execution setting, not an attack parameter" if len(settings) == 1
                else "are execution settings, not attack parameters")
        raise UserError(
            f"{cls.name}: {', '.join(settings)} {what}: pass "
            f"execution=Execution({settings[0]}=...) to the attack call, evaluate or audit"
        )
    if unknown:
        raise UserError(
            f"{cls.name}: unknown parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(fields)}"
        )
    missing = [
        f.name
        for f in fields.values()
        if f.default is dataclasses.MISSING and f.name not in params
    ]
    if missing:
        raise UserError(f"{cls.name}: missing parameter(s) {', '.join(missing)}")
    return cls(**params)


__all__ = [
    "APGD",
    "ATTACKS",
    "BPDA",
    "CPU_BLOCK_SIZE",
    "CW",
    "FAB",
    "FGSM",
    "PGD",
    "Attack",
    "AttackResult",
    "DeepFool",
    "Evaluation",
    "Execution",
    "Square",
    "Transfer",
    "attack_mode",
    "bpda",
    "craft",
    "evaluate",
    "get",
    "relabelled",
    "score",
    "transfer",
]
