"""The audit's statistics, which live in ``aerobust.stats`` so that the report can use
them without importing the audit."""

from aerobust.stats import mcnemar, proportion_interval, smallest_significant_count

__all__ = ["mcnemar", "proportion_interval", "smallest_significant_count"]
