"""Validation of attack and execution settings: one readable line (``UserError``) for
a value out of range or of the wrong type, shared by every attack and the runner."""

from __future__ import annotations

import math

from aerobust.errors import UserError


def check_number(
    attack: str,
    name: str,
    value: object,
    low: float,
    high: float = math.inf,
    *,
    integer: bool = False,
    low_open: bool = False,
) -> None:
    """Raise a one-line ``UserError`` unless ``low <= value <= high`` (``low < value`` if open)."""
    kind = "an integer" if integer else "a number"
    types = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, types) or not math.isfinite(value):
        raise UserError(f"{attack}: {name} must be {kind}, got {value!r}")
    if (value <= low if low_open else value < low) or value > high:
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{']' if math.isfinite(high) else ')'}"
        raise UserError(f"{attack}: {name} must be in {span}, got {value!r}{_hint(name, value)}")


def check_bool(attack: str, name: str, value: object) -> None:
    """Raise a one-line ``UserError`` unless ``value`` is a bool (not just truthy)."""
    if not isinstance(value, bool):
        raise UserError(f"{attack}: {name} must be true or false, got {value!r}")


def _hint(name: str, value: object) -> str:
    """Epsilons above 1 are almost always given in 0-255 units by mistake."""
    if name == "eps" and isinstance(value, (int, float)) and 1 < value <= 255:
        return f" (attacks use [0,1] pixel units: did you mean {value}/255 = {value / 255:.4g}?)"
    return ""
