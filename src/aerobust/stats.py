"""The statistics behind the audit's and the report's numbers: exact intervals and a
paired test, so a claim that one robust accuracy beats another comes with its noise.
Low in the layers (``docs/layers.md``): the report uses them without loading the audit."""

from __future__ import annotations

from scipy.stats import binomtest


def proportion_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact) interval of a proportion: never narrower than the truth,
    which matters for the small point counts an audit is often run on."""
    if n == 0:
        return (0.0, 1.0)
    ci = binomtest(successes, n).proportion_ci(confidence_level=level, method="exact")
    return (float(ci.low), float(ci.high))


def mcnemar(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value for paired outcomes on the same points: a
    binomial test of the discordant pairs (robust under one attack only) against 1/2."""
    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    return float(binomtest(only_first, discordant, 0.5).pvalue)


def smallest_significant_count(alpha: float = 0.05) -> int:
    """The fewest discordant pairs, all one way, that McNemar can call significant."""
    count = 1
    while mcnemar(count, 0) >= alpha:
        count += 1
    return count
