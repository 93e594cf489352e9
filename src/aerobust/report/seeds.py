"""Seeds as an axis, in the report: rows that differ only in their seed summarise to
mean, std, n and a 95% interval; two models compare on the same images and seeds by a
paired test; a paper value is judged against our interval, not our mean alone.

With several seeds the interval is Student's t over the seeds' values (training and
attack randomness both in view). With one seed only the test sample's noise can be
seen: an accuracy's interval is then Clopper-Pearson over its images, and two models
are compared point by point (McNemar's test) on the images both saw.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scipy import stats

from aerobust.report.load import Row
from aerobust.report.numbers import fmt, signed
from aerobust.stats import mcnemar, proportion_interval

LEVEL = 0.95
HIGHER, LOWER, WITHIN = "higher", "lower", "within noise"


def seed_of(row: Row) -> int:
    """Rows written before seeds were an axis carry none: they were seed 0."""
    return int(row.get("seed", 0))


def group(rows: Iterable[Row], *keys: str) -> dict[tuple, list[Row]]:
    """Rows by their coordinates ``keys`` (all but the seed), each list in seed order;
    groups in the order their first row comes."""
    out: dict[tuple, list[Row]] = {}
    for row in rows:
        out.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    return {k: sorted(v, key=seed_of) for k, v in out.items()}


@dataclass(frozen=True)
class Summary:
    """One table cell over its seeds; ``lo``/``hi``: the 95% interval (None: unknown)."""

    mean: float | None
    std: float | None
    n: int
    lo: float | None
    hi: float | None

    def text(self, digits: int = 2, seeds: int | None = None) -> str:
        """"78.40" for one seed, "78.40 ± 1.20" for several; "(n=2)" appended when the
        cell has fewer values than the table's ``seeds``."""
        if self.mean is None:
            return "-"
        n = f" (n={self.n})" if seeds is not None and self.n != seeds else ""
        if self.n < 2:
            return fmt(self.mean, digits) + n
        return f"{fmt(self.mean, digits)} ± {fmt(self.std, digits)}{n}"

    def inside(self, value: float) -> bool | None:
        if self.lo is None or self.hi is None:
            return None
        return self.lo <= value <= self.hi

    def beyond(self, value: float) -> float | None:
        """How far ``value`` lies outside the interval (signed: above positive), 0 inside."""
        if self.lo is None or self.hi is None:
            return None
        return value - self.hi if value > self.hi else value - self.lo if value < self.lo else 0


def _t(n: int) -> float:
    return float(stats.t.ppf(0.5 + LEVEL / 2, n - 1))


def summary(rows: Sequence[Row], field: str = "accuracy") -> Summary:
    """Mean, std and interval of ``field`` over the rows (one per seed). A field named
    ``...accuracy`` is a percentage of ``row["n"]`` images: its interval stays inside
    0..100, and with one seed it is the images' binomial interval."""
    percent = field.endswith("accuracy")
    values = [r[field] for r in rows if r.get(field) is not None]
    if not values:
        return Summary(None, None, 0, None, None)
    mean = statistics.fmean(values)
    if len(values) >= 2:
        std = statistics.stdev(values)
        half = _t(len(values)) * std / math.sqrt(len(values))
        lo, hi = mean - half, mean + half
        if percent:
            lo, hi = max(lo, 0.0), min(hi, 100.0)
        return Summary(mean, std, len(values), lo, hi)
    n = rows[0].get("n")
    if percent and n:
        lo, hi = proportion_interval(round(values[0] * n / 100), n, LEVEL)
        return Summary(mean, None, 1, 100 * lo, 100 * hi)
    return Summary(mean, None, 1, None, None)


def versus_paper(cell: Summary, paper: float | None) -> str:
    """Ours minus the paper's, marked "≈" when the paper's value lies inside our 95%
    interval (the difference is within our noise)."""
    if cell.mean is None or paper is None:
        return "-"
    mark = " ≈" if cell.inside(paper) else ""
    return f"{signed(cell.mean - paper)}{mark}"


@dataclass(frozen=True)
class Paired:
    """Second minus first on the same images and seeds, in points; ``test`` names how."""

    diff: float
    lo: float | None
    hi: float | None
    p: float | None
    seeds: int
    test: str

    @property
    def direction(self) -> str:
        """HIGHER or LOWER when significant at 5%, else WITHIN (noise)."""
        if self.p is None or self.p >= 1 - LEVEL:
            return WITHIN
        return HIGHER if self.diff > 0 else LOWER

    def text(self) -> str:
        interval = ("" if self.lo is None else f" [{signed(self.lo)}, {signed(self.hi)}]")
        star = "*" if self.direction != WITHIN else ""
        return f"{signed(self.diff)}{interval}{star}"


def paired(first: Sequence[Row], second: Sequence[Row], field: str = "accuracy",
           points: str = "points") -> Paired | None:
    """Compare two models' replicate rows seed by seed. Several seeds: a paired t-test
    over the seeds' differences. One seed: McNemar's test on the points robust under one
    model and not the other (the rows' ``points``), with a Wald interval."""
    by_seed = {seed_of(r): r for r in first if r.get(field) is not None}
    pairs = [(by_seed[seed_of(r)], r) for r in second
             if r.get(field) is not None and seed_of(r) in by_seed]
    if not pairs:
        return None
    diffs = [b[field] - a[field] for a, b in pairs]
    if len(pairs) >= 2:
        mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
        if sd == 0:  # every seed moved by the same amount: t cannot say; count points
            return Paired(mean, mean, mean, _pooled_mcnemar(pairs, points), len(pairs),
                          "McNemar, pooled over the seeds")
        half = _t(len(pairs)) * sd / math.sqrt(len(pairs))
        p = float(stats.ttest_1samp(diffs, 0.0).pvalue)
        return Paired(mean, mean - half, mean + half, p, len(pairs), "paired t")
    a, b = pairs[0]
    if points not in a or points not in b or a.get("n") != b.get("n") or not a.get("n"):
        return Paired(diffs[0], None, None, None, 1, "none (no per-point record)")
    only_a = len(set(a[points]) - set(b[points]))
    only_b = len(set(b[points]) - set(a[points]))
    n = a["n"]
    d = (only_b - only_a) / n
    se = math.sqrt(max(only_a + only_b - n * d * d, 0.0)) / n
    z = float(stats.norm.ppf(0.5 + LEVEL / 2))
    return Paired(100 * d, 100 * (d - z * se), 100 * (d + z * se), mcnemar(only_a, only_b), 1,
                  "McNemar")


def _pooled_mcnemar(pairs: list[tuple[Row, Row]], points: str) -> float | None:
    """McNemar's test on the discordant points summed over the seeds; None without a
    per-point record."""
    if not all(points in a and points in b for a, b in pairs):
        return None
    only_a = sum(len(set(a[points]) - set(b[points])) for a, b in pairs)
    only_b = sum(len(set(b[points]) - set(a[points])) for a, b in pairs)
    return mcnemar(only_a, only_b)


def spread_note(rows: Sequence[Row]) -> str:
    """What a table's cells are: one seed, or mean ± std over how many."""
    seeds = sorted({seed_of(r) for r in rows})
    if len(seeds) < 2:
        return (f"One seed ({seeds[0] if seeds else 0}): no seed-to-seed spread; 95% "
                "intervals are the test sample's (Clopper-Pearson).")
    return (f"Mean ± std over {len(seeds)} seeds ({', '.join(map(str, seeds))}; n = "
            f"{len(seeds)} per cell unless the cell says otherwise); 95% intervals are "
            "Student's t over the seeds.")
