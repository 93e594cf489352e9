"""The paper's figures redrawn from our rows, and a grid of example images, as PNG bytes.

Drawn on a bare ``matplotlib.figure.Figure`` (Agg canvas) rather than pyplot: nothing
global changes (backend, open-figure registry) in the process that asks for a report.
One colour per model family across every figure: without the AE blue, with it orange.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from aerobust.report.load import Row
from aerobust.report.seeds import Summary, group, seed_of, summary

BLUE, ORANGE = "tab:blue", "tab:orange"
RIGHT, WRONG = "#1a7f37", "#cf222e"
EPS_LABEL = "epsilon (0-255 pixel units)"
# Fig. 2: (letter, box, attack, defense) in the paper's 2 x 4 layout
FIG2_PANELS = [(letter, box, attack, defense)
               for box, letters in (("white", "abcd"), ("black", "efgh"))
               for letter, (defense, attack) in zip(
                   letters, (("T", "fgsm"), ("T", "pgd"), ("GCE", "fgsm"), ("GCE", "pgd")),
                   strict=True)]
# Fig. 2 curves per panel: (variant pattern, legend label, style); {d} is the defense
FIG2_CURVES = (("C+{d}", "C+T / C+GCE (the panel's defense)",
                dict(color=BLUE, linestyle="-", marker="o")),
               ("(AE-C)+{d}", "(AE-C)+T / (AE-C)+GCE", dict(color=ORANGE, linestyle="-",
                                                             marker="s")),
               ("C", "C, no defense", dict(color=BLUE, linestyle="--", alpha=0.6)),
               ("AE-C", "AE-C, no defense", dict(color=ORANGE, linestyle="--", alpha=0.6)))
FIG4_PANELS = (("C", "AE-C"), ("advC", "AE-advC"))
FIG4_STYLE = {"C": (BLUE, "o"), "AE-C": (ORANGE, "s"), "advC": (BLUE, "o"),
              "AE-advC": (ORANGE, "s")}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _curve(rows: list[Row], **match: object) -> tuple[list[float], list[float], list[float]]:
    """(eps, mean accuracy over the seeds, std over the seeds; 0 for one seed) of the
    rows matching ``match``, sorted by eps."""
    by_eps = group((r for r in rows if r.get("accuracy") is not None
                    and all(r[k] == v for k, v in match.items())), "eps")
    cells = sorted((eps, summary(reps)) for (eps,), reps in by_eps.items())
    return ([e for e, _ in cells], [s.mean for _, s in cells],
            [s.std or 0.0 for _, s in cells])


def _plot(ax: Axes, rows: list[Row], label: str, style: dict, **match: object) -> None:
    """One curve at the seeds' mean, in a band of +- one std when there are several."""
    x, y, spread = _curve(rows, **match)
    if not x:
        return
    ax.plot(x, y, label=label, linewidth=1.8, markersize=5, **style)
    if any(spread):
        mean, std = np.array(y), np.array(spread)
        ax.fill_between(x, mean - std, mean + std, color=style.get("color"), alpha=0.18,
                        linewidth=0)


def _accuracy_axes(ax: Axes, eps: Sequence[float]) -> None:
    ax.set_ylim(-3, 103)
    ax.set_xticks(sorted(eps))
    ax.grid(alpha=0.3)


def _seeds(rows: list[Row]) -> str:
    seeds = len({seed_of(r) for r in rows})
    return f"; mean over {seeds} seeds, band ± one std" if seeds > 1 else ""


def figure2_png(rows: list[Row], dataset: str) -> bytes:
    """Fig. 2's panels: white-box (a)-(d) on top, black-box (e)-(h) below; each panel
    the defended pair solid and the undefended pair dashed for reference."""
    fig = Figure(figsize=(15, 7.6), layout="constrained")
    axes = fig.subplots(2, 4, sharex=True, sharey=True)
    eps = {r["eps"] for r in rows}
    for ax, (letter, box, attack, defense) in zip(axes.flat, FIG2_PANELS, strict=True):
        for pattern, label, style in FIG2_CURVES:
            _plot(ax, rows, label, style, box=box, attack=attack,
                  variant=pattern.format(d=defense))
        name = "temperature T" if defense == "T" else "GCE"
        ax.set_title(f"({letter}) {attack.upper()}, {name}", fontsize=11)
        _accuracy_axes(ax, eps)
    for ax in axes[1]:
        ax.set_xlabel(EPS_LABEL)
    axes[0, 0].set_ylabel("white-box\naccuracy (%)")
    axes[1, 0].set_ylabel("black-box (transfer)\naccuracy (%)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, frameon=False)
    fig.suptitle(f"Fig. 2 on {dataset} ({rows[0]['n']} test images{_seeds(rows)}): top row "
                 "white-box, bottom row transferred from a same-architecture substitute")
    return _png(fig)


def figure4_png(parts: Sequence[tuple[str, list[Row] | None]]) -> bytes:
    """Fig. 4's panels, two per part side by side ((a, b) for the first part, (c, d) for
    the second, as the paper's MNIST and CIFAR-10): C vs AE-C, then advC vs AE-advC."""
    fig = Figure(figsize=(4.4 * 2 * len(parts), 4.6), layout="constrained")
    axes = fig.subplots(1, 2 * len(parts), sharey=True, squeeze=False)[0]
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    for (dataset, rows), pair in zip(parts, np.split(axes, len(parts)), strict=True):
        for ax, variants in zip(pair, FIG4_PANELS, strict=True):
            ax.set_title(f"({next(letters)}) {dataset}: {' vs '.join(variants)}", fontsize=11)
            if rows is None:
                ax.text(0.5, 0.5, "not run", ha="center", va="center",
                        transform=ax.transAxes, fontsize=12, color="grey")
                ax.set_xticks([])
                continue
            for variant in variants:
                color, marker = FIG4_STYLE[variant]
                _plot(ax, rows, variant, dict(color=color, marker=marker), variant=variant)
            _accuracy_axes(ax, {r["eps"] for r in rows})
            ax.set_xlabel(EPS_LABEL)
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    axes[0].set_ylabel("accuracy (%)")
    attacks = sorted({r["attack"].upper() for _, rows in parts if rows for r in rows})
    seeds = max((len({seed_of(r) for r in rows}) for _, rows in parts if rows), default=1)
    fig.suptitle(f"Fig. 4: {', '.join(attacks)} white-box accuracy without and with PGD "
                 f"adversarial training (advC)"
                 + (f"\nmean over {seeds} seeds, band ± one std" if seeds > 1 else ""))
    return _png(fig)


def examples_png(ex: dict[str, np.ndarray]) -> bytes:
    """Rows of examples; columns clean, reconstruction, the two adversarials and their
    perturbations (grey = 0, one symmetric scale for both so they compare). Tile
    labels: the true class and each model's prediction, green when right, red when
    wrong."""
    clean, recon, adv_c, adv_ae = (np.clip(ex[k].astype(np.float32), 0, 1)
                                   for k in ("clean", "reconstruction", "adv_c", "adv_ae_c"))
    d_c, d_ae = adv_c - clean, adv_ae - clean
    scale = max(float(np.abs(d_c).max(initial=0)), float(np.abs(d_ae).max(initial=0)), 1e-8)
    k, grey = len(clean), clean.shape[1] == 1
    y = ex["label"]

    def linf(d: np.ndarray) -> list[tuple[str, str]]:
        return [(f"Linf {v * 255:.0f}/255", "black") for v in np.abs(d).reshape(k, -1).max(1)]

    def predicted(who: str, pred: np.ndarray) -> list[tuple[str, str]]:
        return [(f"{who}: {p}", RIGHT if p == t else WRONG) for p, t in zip(pred, y, strict=True)]

    columns = [
        ("clean", clean, False, [(f"true {t}, {s}", c) for t, (s, c)
                                 in zip(y, predicted("C", ex["pred_c_clean"]), strict=True)]),
        ("AE reconstruction", recon, False, [("", "black")] * k),
        ("adversarial for C", adv_c, False, predicted("C", ex["pred_c_adv"])),
        ("adversarial for AE-C", adv_ae, False, predicted("AE-C", ex["pred_ae_c_adv"])),
        ("perturbation for C", d_c, True, linf(d_c)),
        ("perturbation for AE-C", d_ae, True, linf(d_ae)),
    ]
    fig = Figure(figsize=(10.5, 1.75 * k + 1.0), layout="constrained")
    axes = fig.subplots(k, len(columns), squeeze=False)
    for j, (title, images, centred, labels) in enumerate(columns):
        tiles = 0.5 + images / (2 * scale) if centred else images
        for ax, tile, (text, color) in zip(axes[:, j], tiles, labels, strict=True):
            if grey:
                ax.imshow(tile[0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(np.clip(np.moveaxis(tile, 0, -1), 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(text, color=color, fontsize=9)
        axes[0, j].set_title(title, fontsize=10)
    fig.suptitle(f"{ex['attack']}; perturbations: grey = 0, black / white = "
                 f"-/+{scale * 255:.0f}/255", fontsize=11)
    return _png(fig)


def audit_png(audit: dict) -> bytes:
    """An audit in two panels: robust accuracy after each rung of the ladder (bars, the
    baseline first), and robust accuracy against eps (the eps curve, with the audited
    value at the audit's eps)."""
    fig = Figure(figsize=(11, 4))
    ladder, curve = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    rungs = audit["rungs"]
    names = [r["name"] for r in rungs]
    values = [100 * (r["alone_robust_accuracy"] if r["kind"] == "baseline"
                     else r["robust_accuracy"]) for r in rungs]
    colours = [BLUE if r["kind"] == "baseline" else ORANGE if r["broken"] else "#b0b7bf"
               for r in rungs]
    bars = ladder.bar(range(len(rungs)), values, color=colours)
    ladder.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=8)
    ladder.set_xticks(range(len(rungs)), names, rotation=35, ha="right", fontsize=8)
    ladder.set_ylabel("robust accuracy (%)")
    ladder.set_ylim(0, 105)
    ladder.set_title(f"after each rung (baseline: alone); verdict {audit['verdict']}",
                     fontsize=10)
    ladder.grid(axis="y", alpha=0.3)
    if audit["curve"]:
        eps = [c["eps"] for c in audit["curve"]]
        curve.plot(eps, [100 * c["robust_accuracy"] for c in audit["curve"]], marker="o",
                   color=BLUE, label="APGD-CE, APGD-DLR")
        curve.plot([audit["eps"]], [100 * audit["robust_accuracy"]], marker="*",
                   markersize=12, linestyle="none", color=ORANGE, label="audited (ladder)")
        curve.set_xlabel("epsilon ([0,1] pixel units)")
        curve.set_ylim(-3, 103)
        curve.grid(alpha=0.3)
        curve.legend(loc="upper right", fontsize=8)
        curve.set_title("robust accuracy against eps", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _audit_cell(reps: list[Row]) -> Row | None:
    """One model and eps over its seeds: the row itself for one seed; else the means,
    the verdict of the majority and Student's t interval of the audited accuracy."""
    if len(reps) < 2:
        return reps[0] if reps else None
    audited = summary(reps, "audited_accuracy")
    verdicts = [r["verdict"] for r in reps]
    return {"baseline_accuracy": summary(reps, "baseline_accuracy").mean,
            "audited_accuracy": audited.mean, "audited_interval": [audited.lo, audited.hi],
            "verdict": max(set(verdicts), key=verdicts.count)}


def paper_audit_png(rows: list[Row], dataset: str) -> bytes:
    """The paper's models audited, one panel per eps: per model the paper's attack (PGD
    on CE, light) beside the audited robust accuracy (dark, with its 95% interval)."""
    eps_list = sorted({r["eps"] for r in rows})
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig = Figure(figsize=(max(7.0, 1.1 * len(variants)) * len(eps_list) / 1.6, 4.4),
                 layout="constrained")
    axes = fig.subplots(1, len(eps_list), sharey=True, squeeze=False)[0]
    by = group(rows, "variant", "eps")
    x = np.arange(len(variants))
    for ax, eps in zip(axes, eps_list, strict=True):
        cells = [_audit_cell(by.get((v, eps), [])) for v in variants]
        colour = [ORANGE if "AE" in v else BLUE for v in variants]
        base = [c["baseline_accuracy"] if c else np.nan for c in cells]
        audited = [c["audited_accuracy"] if c else np.nan for c in cells]
        err = np.array([[a - c["audited_interval"][0], c["audited_interval"][1] - a]
                        if c else [0, 0] for a, c in zip(audited, cells, strict=True)]).T
        ax.bar(x - 0.2, base, 0.4, color=colour, alpha=0.35)
        ax.bar(x + 0.2, audited, 0.4, color=colour, yerr=err, capsize=3)
        for i, c in enumerate(cells):
            if c and c["verdict"] == "masking":
                ax.text(i, max(base[i], audited[i]) + 4, "masking", ha="center",
                        fontsize=7, color=WRONG, rotation=90, va="bottom")
        ax.set_xticks(x, variants, rotation=35, ha="right", fontsize=9)
        ax.set_title(f"eps {eps:g}/255", fontsize=11)
        ax.set_ylim(0, 115)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("robust accuracy (%)")
    handles = [axes[0].patches[0], axes[0].patches[len(variants)]]
    fig.legend(handles, ["PGD on CE (the paper's attack)", "audited, 95% interval"],
               loc="outside lower center", ncol=2, frameon=False)
    fig.suptitle(f"The paper's models audited on {dataset} ({rows[0]['n']} test images, "
                 f"budget {rows[0]['budget']})")
    return _png(fig)


@dataclass(frozen=True)
class GapItem:
    """One cell of a gaps figure: ours at the defaults, the paper's value and the span
    of our values over the choices tried (None: no choices)."""

    label: str
    ours: Summary
    paper: float | None
    span: tuple[float, float] | None


def gaps_png(items: Sequence[GapItem], title: str, unit: str) -> bytes:
    """One row per cell: the choices' span as a bar, ours at the defaults as a dot with
    its 95% interval, the paper's value as a cross."""
    fig = Figure(figsize=(8, 0.5 * len(items) + 1.4), layout="constrained")
    ax = fig.subplots()
    for i, item in enumerate(items):
        if item.span is not None:
            lo, hi = item.span
            ax.barh(i, max(hi - lo, 1e-9), left=lo, height=0.5, color=BLUE, alpha=0.25,
                    label="range over the choices" if i == 0 else None)
        if item.ours.mean is not None:
            err = (None if item.ours.lo is None or item.ours.hi is None else
                   [[item.ours.mean - item.ours.lo], [item.ours.hi - item.ours.mean]])
            ax.errorbar(item.ours.mean, i, xerr=err, fmt="o", color=BLUE, capsize=3,
                        label="ours at the defaults (95% interval)" if i == 0 else None)
        if item.paper is not None:
            ax.plot(item.paper, i, "x", color=WRONG, markersize=9, markeredgewidth=2,
                    label="the paper" if i == 0 else None)
    ax.set_yticks(range(len(items)), [item.label for item in items])
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(unit)
    ax.set_title(title)
    fig.legend(loc="outside lower center", ncol=3, frameon=False)
    return _png(fig)
