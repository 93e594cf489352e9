"""The report of a ``reproduce`` run: report.md, a self-contained report.html and PNG
figures, with the paper's numbers beside ours and a verdict per claim. Reads result
rows only; never trains or attacks."""

from aerobust.report.build import write_experiment, write_report

__all__ = ["write_experiment", "write_report"]
