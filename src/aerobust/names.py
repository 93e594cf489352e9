"""The experiments' names, in the paper's order (then the audit of the paper's models):
the one list the CLI, the experiments and the report share. A module of its own, so
that ``--help`` and the report import no training or attack code."""

EXPERIMENT_NAMES: tuple[str, ...] = ("table1", "table2", "figure2", "table3", "table4",
                                     "figure4", "audit")
