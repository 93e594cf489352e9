"""Fig. 2: the AE beside two gradient-masking defenses, softmax temperature (C+T) and
Guided Complement Entropy (C+GCE), white-box (top row) and black-box (bottom row),
FGSM and PGD, accuracy over an epsilon sweep.

A masking defense gains white-box accuracy and loses it under transfer; the paper's
point is that the AE keeps its gain in both rows. Reading (see README): (AE-C)+T is the
AE trained alone (MSE) in front of the classifier trained with temperature, composed
without fine-tuning; black-box adversarials come from the same-architecture substitute
of Table 2(b), trained with plain CE (for the AE-C variants an AE-C substitute).
"""

from __future__ import annotations

import io
from pathlib import Path

from torch import nn

from aerobust import atomic, attacks
from aerobust.experiments.common import Cells, Row, Workspace, fmt, percent
from aerobust.experiments.table2 import Crafter, make_attack, masking_n, substitute
from aerobust.models import AEClassifier
from aerobust.training.losses import loss_kwargs

EXPERIMENT = "figure2"
SWEEP = {"digits": (0, 10, 20, 30, 40, 60, 80), "mnist": (0, 10, 20, 30, 40, 60, 80),
         "cifar": (0, 1, 2, 4, 6, 8, 10)}
VARIANTS = ("C", "AE-C", "C+T", "(AE-C)+T", "C+GCE", "(AE-C)+GCE")
BOXES = ("white", "black")
ATTACKS = ("fgsm", "pgd")
# (panel letter, box, attack, defense): the paper's layout, 2 rows x 4 columns
PANELS = [(letter, box, attack, defense)
          for box, letters in zip(BOXES, ("abcd", "efgh"), strict=True)
          for letter, (defense, attack) in zip(
              letters, [("T", "fgsm"), ("T", "pgd"), ("GCE", "fgsm"), ("GCE", "pgd")],
              strict=True)]

Models = dict[str, tuple[nn.Module, dict[str, str]]]


def sweep(ws: Workspace) -> tuple[float, ...]:
    return ws.config.eps_sweep or SWEEP[ws.family]


def models(ws: Workspace) -> Models:
    """The six targets; each AE-C variant shares the one AE (seed) with plain AE-C."""
    ae_run = ws.train("conv-ae")
    ae_runs = {"autoencoder_run": ae_run.path.name}
    losses = {"": ("ce", {}),
              "T": ("temperature", {"temperature": ws.config.temperature}),
              "GCE": ("gce", {"alpha": ws.config.gce_alpha})}
    out: Models = {}
    for defense, (loss, given) in losses.items():
        run = ws.train(ws.classifier_arch, loss=loss, loss_kwargs=loss_kwargs(loss, **given))
        clf = run.load(ws.device)
        runs = {"classifier_run": run.path.name}
        c, ae_c = ("C", "AE-C") if not defense else (f"C+{defense}", f"(AE-C)+{defense}")
        out[c] = (clf, runs)
        out[ae_c] = (AEClassifier(ae_run.load(ws.device), clf).eval(), {**runs, **ae_runs})
    return out


def cell_count(ws: Workspace) -> int:
    return len(VARIANTS) * len(BOXES) * len(ATTACKS) * len(sweep(ws))


def run(ws: Workspace, out_dir: Path) -> list[Row]:
    cells = Cells(out_dir, EXPERIMENT, ws)
    targets = models(ws)
    crafter = Crafter(ws, masking_n(ws))
    x, y = crafter.x, crafter.y
    rows = []
    for variant in VARIANTS:
        target, target_runs = targets[variant]
        family = "C" if variant.startswith("C") else "AE-C"
        sub, sub_runs = substitute(ws, "same", family, target, target_runs)
        for box in BOXES:
            for name in ATTACKS:
                for eps in sweep(ws):
                    key = {"box": box, "variant": variant, "attack": name, "eps": eps}

                    def compute(target: nn.Module = target, sub: nn.Module = sub,
                                sub_runs: dict[str, str] = sub_runs, box: str = box,
                                name: str = name, eps: float = eps,
                                target_runs: dict[str, str] = target_runs) -> Row:
                        if box == "black":
                            return {**crafter.transfer(sub, sub_runs, target, name, eps),
                                    **target_runs}
                        ev = attacks.evaluate(target, x, y, make_attack(ws, name, eps),
                                              batch_size=ws.config.batch_size,
                                              progress=ws.progress)
                        return {"accuracy": percent(ev.robust_accuracy),
                                "clean_accuracy": percent(ev.clean_accuracy),
                                "params": ev.params, "n": ev.n,
                                "seconds": ev.seconds, **target_runs}

                    rows.append(cells.run(key, compute))
    write_figure(Path(out_dir) / f"{EXPERIMENT}.png", rows)
    return rows


def write_figure(path: Path, rows: list[Row]) -> None:
    """The paper's 2 x 4 panel layout; plain C and AE-C dashed in every panel, for
    reference. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r["box"], r["variant"], r["attack"], r["eps"]): r["accuracy"] for r in rows}
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.8), sharex=True, sharey=True)
    # (label in the shared legend, style): the defended pair solid, the plain pair dashed
    styles = {"C+T or C+GCE (the panel's defense)": dict(color="tab:blue", linestyle="-",
                                                          marker="o"),
              "(AE-C)+T or (AE-C)+GCE": dict(color="tab:orange", linestyle="-", marker="s"),
              "C (no defense)": dict(color="tab:blue", linestyle="--", alpha=0.55),
              "AE-C (no defense)": dict(color="tab:orange", linestyle="--", alpha=0.55)}
    for ax, (letter, box, attack, defense) in zip(axes.flat, PANELS, strict=True):
        variants = (f"C+{defense}", f"(AE-C)+{defense}", "C", "AE-C")
        for variant, (label, style) in zip(variants, styles.items(), strict=True):
            pts = sorted((e, a) for (b, v, at, e), a in by.items()
                         if (b, v, at) == (box, variant, attack))
            if pts:
                ax.plot(*zip(*pts, strict=True), label=label, linewidth=1.8, markersize=4,
                        **style)
        ax.set_title(f"({letter}) {attack.upper()}, {box}-box, "
                     f"{'temperature T' if defense == 'T' else 'GCE'}", fontsize=11)
        ax.set_ylim(-2, 102)
        ax.set_xticks(sorted({e for (_, _, _, e) in by}))
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epsilon (0-255 pixel units)")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    first = rows[0]
    fig.suptitle(f"Fig. 2 on {first['dataset']} ({first['n']} test images): top row "
                 "white-box; bottom row black-box, transferred from a same-architecture "
                 "substitute trained with plain CE", fontsize=12)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=10, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())


def markdown(rows: list[Row]) -> str:
    """One table per row of the figure: accuracy (%) of every variant at every epsilon.
    The paper publishes Fig. 2 as a plot only, so there are no reference numbers."""
    if not rows:
        return ""
    first = rows[0]
    by = {(r["box"], r["variant"], r["attack"], r["eps"]): r for r in rows}
    lines = [f"### Fig. 2: gradient-masking defenses with and without the AE on "
             f"`{first['dataset']}` (accuracy %)", "",
             "The paper shows Fig. 2 (CIFAR-10) as a plot only: no published numbers to "
             "compare. Plot: `figure2.png`.", ""]
    titles = {"white": "White-box (top row: (a)-(d))",
              "black": "Black-box, transferred from a same-architecture substitute trained "
                       "with plain CE (bottom row: (e)-(h))"}
    for box in BOXES:
        order = list(dict.fromkeys((r["attack"], r["eps"]) for r in rows if r["box"] == box))
        lines += [f"#### {titles[box]}", "",
                  "| Attack | eps | " + " | ".join(VARIANTS) + " |",
                  "| --- | --- | " + " | ".join("---:" for _ in VARIANTS) + " |"]
        for attack, eps in order:
            vals = [fmt(by.get((box, v, attack, eps), {}).get("accuracy")) for v in VARIANTS]
            lines.append(f"| {attack.upper()} | {eps:g} | " + " | ".join(vals) + " |")
        lines.append("")
    pgd = next((r["params"] for r in rows if r["attack"] == "pgd" and r["box"] == "white"
                and r["eps"]), None)
    cfg = first["config"]
    notes = [f"{first['n']} test images", f"T = {cfg['temperature']:g} in training only",
             f"GCE alpha = {cfg['gce_alpha']:.3g}"]
    if pgd:
        notes.append(f"PGD {pgd['steps']} steps x {pgd['restarts']} restart(s); white-box "
                     f"keeps the first fooling iterate, black-box transfers the "
                     f"{cfg['transfer_keep']} one")
    return "\n".join(lines) + "\n" + "; ".join(notes) + ".\n"
