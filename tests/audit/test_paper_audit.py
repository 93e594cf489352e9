"""The reproduce report's Audit section: each claim's word follows the audited numbers
and the paired test on the same points, never the paper's."""

from __future__ import annotations

from typing import Any

import pytest

from aerobust.report.audit import _claims, _compare

N = 100


def _row(variant: str, eps: float, robust: range, verdict: str = "no-masking-detected",
         baseline: int | None = None) -> dict[str, Any]:
    audited = 100 * len(robust) / N
    return {"variant": variant, "eps": eps, "n": N, "verdict": verdict,
            "robust_points": list(robust), "audited_accuracy": audited,
            "baseline_accuracy": audited if baseline is None else baseline,
            "closed_by": None, "audit": {"checks": [{"name": "large-eps", "passed": True}]}}


def _status(rows: list[dict[str, Any]], claim: str, dataset: str = "mnist") -> str:
    return next(status for text, status, _ in _claims(rows, dataset) if text.startswith(claim))


def test_comparison_needs_a_significant_paired_difference() -> None:
    rows = [_row("C", 20, range(10)), _row("AE-C", 20, range(30)),  # 20 vs 0 discordant
            _row("C", 80, range(0)), _row("AE-C", 80, range(3))]  # 3 vs 0: too few
    statuses, pieces = _compare(rows, "C", "AE-C")
    assert statuses == ["agrees", "inconclusive"]
    assert "robust under one only: 20 vs 0" in pieces[0] and "+20.0 points" in pieces[0]
    assert _status(rows, "(1)") == "agrees"  # where the points can tell
    # the same accuracies on disjoint points: a large paired difference either way
    swapped = [_row("C", 40, range(40)), _row("AE-C", 40, range(40, 60))]
    assert _compare(swapped, "C", "AE-C")[0] == ["disagrees"]
    assert _status(swapped + rows[:2], "(1)") == "mixed"  # one eps each way
    assert _status(swapped + rows[2:], "(1)") == "disagrees"


def test_direction_of_fig4_follows_the_paper_dataset() -> None:
    rows = [_row("advC", 20, range(50)), _row("AE-advC", 20, range(20))]
    assert _status(rows, "(6)", "mnist") == "disagrees"
    assert _status(rows, "(6)", "cifar10") == "agrees"


@pytest.mark.parametrize(("verdicts", "expected"), [
    (("no-masking-detected", "no-masking-detected"), "agrees"),
    (("masking", "masking"), "disagrees"),
    (("no-masking-detected", "masking"), "mixed"),
    (("inconclusive", "masking"), "disagrees"),
    (("inconclusive", "inconclusive"), "inconclusive")])
def test_masking_claims_read_the_verdicts(verdicts: tuple[str, str], expected: str) -> None:
    rows = [_row("AE-C", eps, range(30), v) for eps, v in zip((20, 80), verdicts, strict=True)]
    assert _status(rows, "(3) AE-C's robustness") == expected
    flipped = {"masking": "no-masking-detected", "no-masking-detected": "masking"}
    masked = [_row(v, 20, range(30), flipped.get(verdict, verdict))
              for v, verdict in zip(("C+T", "C+GCE"), verdicts, strict=True)]
    assert _status(masked, "(3) Temperature") == expected
    assert _status([], "(1)") == "no data"
