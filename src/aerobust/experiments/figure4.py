"""Figure 4: the autoencoder combined with PGD adversarial training. Accuracy against an
eps sweep for C and AE-C (panel a) and for the adversarially trained advC and AE-advC
(panel b); the paper's (a, b) are MNIST and (c, d) the same on CIFAR-10."""

from __future__ import annotations

import io
from pathlib import Path

from aerobust import atomic, attacks
from aerobust.experiments.common import Cells, Row, Workspace, fmt, percent
from aerobust.experiments.figure2 import sweep
from aerobust.experiments.table1 import make_attack
from aerobust.models import AEClassifier
from aerobust.training import adversarial_settings

EXPERIMENT = "figure4"
PANELS = (("a", ("C", "AE-C")), ("b", ("advC", "AE-advC")))


def cell_count(ws: Workspace) -> int:
    return sum(len(variants) for _, variants in PANELS) * len(sweep(ws))


def run(ws: Workspace, out_dir: Path) -> list[Row]:
    cells = Cells(out_dir, EXPERIMENT, ws)
    plain = ws.train(ws.classifier_arch)
    adv_settings = adversarial_settings(ws.dataset)
    adversarial = ws.train(ws.classifier_arch, adversarial=adv_settings)
    ae_run = ws.train("conv-ae")
    ae = ae_run.load(ws.device)
    runs = {"C": plain, "AE-C": plain, "advC": adversarial, "AE-advC": adversarial}
    x, y = ws.eval_split(ws.config.n_eval)
    attack_name = ws.config.sweep_attack
    rows = []
    for _, variants in PANELS:
        for variant in variants:
            clf = runs[variant].load(ws.device)
            model = AEClassifier(ae, clf).eval() if variant.startswith("AE-") else clf
            for eps in sweep(ws):
                key = {"variant": variant, "attack": attack_name, "eps": eps}

                def compute(model=model, eps: float = eps, variant: str = variant) -> Row:
                    ev = attacks.evaluate(model, x, y, make_attack(ws, attack_name, eps),
                                          batch_size=ws.config.batch_size,
                                          progress=ws.progress)
                    return {"accuracy": percent(ev.robust_accuracy),
                            "clean_accuracy": percent(ev.clean_accuracy), "n": ev.n,
                            "seconds": ev.seconds, "params": ev.params,
                            "classifier_run": runs[variant].path.name,
                            "autoencoder_run": ae_run.path.name if "AE" in variant else None,
                            "adversarial_training": adv_settings if "adv" in variant else None}

                rows.append(cells.run(key, compute))
    write_figure(out_dir / f"{EXPERIMENT}.png", rows)
    return rows


def write_figure(path: Path, rows: list[Row]) -> None:
    """Two panels side by side, as one dataset's half of the paper's Fig. 4."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    style = {"C": ("tab:blue", "o"), "AE-C": ("tab:orange", "s"),
             "advC": ("tab:blue", "o"), "AE-advC": ("tab:orange", "s")}
    for ax, (letter, variants) in zip(axes, PANELS, strict=True):
        for variant in variants:
            pts = sorted((r["eps"], r["accuracy"]) for r in rows if r["variant"] == variant)
            color, marker = style[variant]
            ax.plot(*zip(*pts, strict=True), color=color, marker=marker, label=variant)
        ax.set_title(f"({letter}) {' vs '.join(variants)}")
        ax.set_xlabel("epsilon (0-255 pixel units)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left")
    axes[0].set_ylabel("accuracy (%)")
    first = rows[0]
    fig.suptitle(f"Fig. 4 on {first['dataset']}: {first['attack'].upper()} white-box, "
                 f"{first['n']} test images", fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())


def markdown(rows: list[Row]) -> str:
    """Accuracy per variant and epsilon (the paper gives Fig. 4 as curves only)."""
    if not rows:
        return ""
    eps_list = list(dict.fromkeys(r["eps"] for r in rows))
    by = {(r["variant"], r["eps"]): r for r in rows}
    lines = [f"### Figure 4: {rows[0]['attack'].upper()} accuracy (%) on "
             f"`{rows[0]['dataset']}` with and without adversarial training", "",
             "![Figure 4](figure4.png)", "",
             "| model | " + " | ".join(f"eps {e:g}" for e in eps_list) + " |",
             "| --- |" + " ---: |" * len(eps_list)]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        lines.append(f"| {variant} | "
                     + " | ".join(fmt(by[(variant, e)]["accuracy"]) for e in eps_list) + " |")
    adv = next(r["adversarial_training"] for r in rows if r["adversarial_training"])
    lines += ["", f"advC: PGD adversarial training with eps {adv['eps'] * 255:.3g}/255, "
              f"{adv['steps']} steps of {adv['step_size'] * 255:.3g}/255. "
              f"{rows[0]['n']} test images."]
    return "\n".join(lines) + "\n"
