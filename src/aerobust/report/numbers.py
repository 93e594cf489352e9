"""Number and label formatting shared by the tables, verdicts and settings: one style for
the whole report, and "-" wherever a value is missing."""

from __future__ import annotations

from collections.abc import Iterable


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def signed(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:+.{digits}f}"


def sci(x: float | None) -> str:
    return "-" if x is None else f"{x:.2e}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def eps_label(eps: float | None) -> str:
    """Epsilons are 0-255 pixel units; minimum-norm attacks have none."""
    return "-" if eps is None else f"{eps:g}"


ATTACK_LABELS = {"clean": "clean", "fgsm": "FGSM", "pgd": "PGD", "cw": "CW (c=0)",
                 "deepfool": "DeepFool"}
LAMBDA, GAMMA = "\N{GREEK SMALL LETTER LAMDA}", "\N{GREEK SMALL LETTER GAMMA}"


def setting_label(setting: str) -> str:
    """Table 3's settings as the paper writes them: "lambda=4" as "λ=4"."""
    return setting.replace("lambda", LAMBDA).replace("gamma", GAMMA)


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def duration(seconds: float | None) -> str:
    """Wall time as a reader says it: 12.3 s, 4 min 05 s, 2 h 07 min."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
