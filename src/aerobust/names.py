"""The experiments' names, in the paper's order (then the audit of the paper's models),
and the sweep of its unstated choices: the one list the CLI, the experiments and the
report share. A module of its own, so that ``--help`` and the report import no training
or attack code."""

# What ``reproduce`` runs unless ``--only`` names others.
EXPERIMENT_NAMES: tuple[str, ...] = ("table1", "table2", "figure2", "table3", "table4",
                                     "figure4", "audit")
# Run only when named (``--only sensitivity``): a sweep around the defaults, hours long
# at the paper's size, which reads best after the main run.
OPTIONAL_EXPERIMENTS: tuple[str, ...] = ("sensitivity",)
ALL_EXPERIMENTS: tuple[str, ...] = EXPERIMENT_NAMES + OPTIONAL_EXPERIMENTS
