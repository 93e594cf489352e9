"""``write_report``: read a ``reproduce --out`` folder, write report.md, report.html and
the figures beside them. Reads result rows only: it never trains a model or runs an
attack, so it is cheap to re-run after any part of the results changes."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

from aerobust import atomic
from aerobust.report import figures, settings, tables
from aerobust.report.audit import paper_audit_blocks
from aerobust.report.blocks import Block, Figure, Heading, Paragraph, Table
from aerobust.report.gaps import gaps_blocks
from aerobust.report.html import render_html
from aerobust.report.load import Part, Results, Row, load_results, read_rows
from aerobust.report.markdown import render_markdown
from aerobust.report.verdicts import CLAIMS, verdicts

TITLE = ("Reproduction report: Revisiting Role of Autoencoders in Adversarial Settings "
         "(Kim et al., ICIP 2020)")
PLOT_ONLY = "The paper gives this figure as a plot only; no reference points are drawn."
TABLES: tuple[tuple[str, str, Callable[[Part], list[Block]]], ...] = (
    ("table1", "Table 1: white-box accuracy (%)", tables.table1),
    ("table2", "Table 2: black-box (transfer) accuracy (%)", tables.table2),
    ("table3", "Table 3: latent classifier accuracy (%) as reconstruction weighs more",
     tables.table3),
    ("table4", "Table 4: mean gradient amplitude G", tables.table4),
)


def _verdicts(results: Results) -> list[Block]:
    per_part = [(p.name, verdicts(p)) for p in results.parts]
    rows = []
    for c in range(len(CLAIMS)):
        for i, (name, found) in enumerate(per_part):
            verdict = found[c]
            rows.append([verdict.claim if i == 0 else "", f"`{name}`", verdict.status,
                         verdict.text])
    return [Heading(2, "Verdicts"),
            Paragraph("Each claim of the paper judged from our numbers, with their noise in "
                      "view: a comparison of two models is a paired test on the same images "
                      "and seeds (t over the seeds; McNemar on the points with one seed). "
                      "**agrees** when ours differ significantly (5%) in the paper's "
                      "direction in some comparable cells and against it in none, "
                      "**disagrees** the other way round, **mixed** when both, "
                      "**inconclusive** when no difference stands out of the noise. Accuracy "
                      "differences are in percentage points; [lo, hi] is a 95% interval, `*` "
                      "marks a significant one. The paper's figures are its own (MNIST or "
                      "CIFAR-10), also where a part runs on other data; where the paper's "
                      "value lies outside our 95% interval, the verdict says by how much."),
            Table(["Claim", "Part", "Verdict", "Our figures, and the paper's"], rows,
                  status_column=2)]


def _table(title: str, make: Callable[[Part], list[Block]]) -> Callable[[list[Part]],
                                                                         list[Block]]:
    def section(parts: list[Part]) -> list[Block]:
        blocks: list[Block] = [Heading(2, title)]
        for part in parts:
            blocks += [Heading(3, f"`{part.name}`"), *make(part)]
        return blocks
    return section


def _figure2(parts: list[Part]) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Fig. 2: the AE beside gradient-masking defenses")]
    for part in parts:
        rows = part.rows.get("figure2")
        blocks.append(Heading(3, f"`{part.name}`"))
        if rows is None:
            blocks.append(Paragraph(f"`{part.name}`: {part.missing('figure2')}."))
            continue
        where = "" if part.paper_dataset == "cifar10" else " The paper shows it for CIFAR-10."
        blocks.append(Figure(
            f"figure2_{part.name}", figures.figure2_png(rows, part.name),
            f"Fig. 2 on {part.name}",
            "White-box (top, a-d) and black-box transfer (bottom, e-h) accuracy over epsilon "
            "for C and AE-C trained with temperature T (a, b, e, f) or GCE (c, d, g, h); the "
            f"undefended C and AE-C dashed for reference. {PLOT_ONLY}{where} Numbers: "
            f"`{part.name}/figure2.csv`."))
    return blocks


def _figure4(parts: list[Part]) -> list[Block]:
    heading = Heading(2, "Fig. 4: the AE with adversarial training")
    panels = [(p.name, p.rows.get("figure4")) for p in parts]
    if all(rows is None for _, rows in panels):
        return [heading, *(Paragraph(f"`{p.name}`: {p.missing('figure4')}.") for p in parts)]
    numbers = ", ".join(f"`{name}/figure4.csv`" for name, rows in panels if rows)
    return [heading, Figure(
        "figure4", figures.figure4_png(panels), "Fig. 4",
        "Per part, left: C vs AE-C; right: advC (PGD adversarial training) vs AE-advC. The "
        f"paper's (a, b) are MNIST and (c, d) CIFAR-10. {PLOT_ONLY} Numbers: {numbers}.")]


def _audit(parts: list[Part]) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Audit: the paper's models under an attack ladder"),
        Paragraph("Is the robustness the paper measures real, or do its attacks fail? Each "
                  "model behind a claim, audited (`aerobust audit`): PGD on CE (the "
                  "paper's attack), then APGD-CE, APGD-DLR, transfer from the classifier "
                  "alone, BPDA / EOT where the probes call for them, APGD-T, Square and a "
                  "more-steps check, each on the points still robust, and AutoAttack's and "
                  "Carlini et al.'s sanity checks. A claim **agrees** when the audit "
                  "supports it at every eps where the points can tell (a comparison of two "
                  "models: a difference in the claimed direction, significant in McNemar's "
                  "test at 0.05 on the same points; a claim about masking: the verdict it "
                  "implies), **disagrees** when it contradicts it wherever they can tell, "
                  "**mixed** when both happen, **inconclusive** when the points cannot tell "
                  "at any eps.")]
    for part in parts:
        blocks += [Heading(3, f"`{part.name}`"), *paper_audit_blocks(part)]
    return blocks


def _gaps(parts: list[Part]) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Gaps to the paper")]
    for part in parts:
        blocks += [Heading(3, f"`{part.name}`"), *gaps_blocks(part)]
    return blocks


# Each experiment's section of the report, in the report's order.
SECTIONS: dict[str, Callable[[list[Part]], list[Block]]] = {
    **{name: _table(title, make) for name, title, make in TABLES},
    "figure2": _figure2, "figure4": _figure4, "audit": _audit, "sensitivity": _gaps}


def _examples(results: Results) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Examples")]
    for part in results.parts:
        blocks.append(Heading(3, f"`{part.name}`"))
        ex = part.examples
        if ex is None:
            blocks.append(Paragraph(f"`{part.name}`: no examples.npz."))
            continue
        blocks.append(Figure(
            f"examples_{part.name}", figures.examples_png(ex), f"Examples from {part.name}",
            f"The first {len(ex['clean'])} test images of `{part.name}` and {ex['attack']} "
            "against C and against AE-C (gradients through the whole AE-C). Columns: clean, "
            "the AE's reconstruction, the adversarials, and their perturbations (adversarial "
            "minus clean; grey = 0, one symmetric scale for both). Under each tile: the true "
            "class and the model's prediction, green when right, red when wrong."))
    return blocks


def build(results: Results) -> list[Block]:
    """The whole document, in the order the task and the paper read."""
    parts = results.parts
    names = ["table1", "table2", "table3", "table4", "figure2", "figure4", "audit"]
    if any("sensitivity" in p.rows or "sensitivity" in (p.requested or ()) for p in parts):
        names.append("sensitivity")  # optional: shown where it was asked for or ran
    sections = [b for name in names for b in _marked(name, SECTIONS[name](parts), parts)]
    return [Heading(1, TITLE), *settings.summary(results), *_partial_note(parts),
            *_verdicts(results), *sections,
            *_examples(results), Heading(2, "Settings"), *settings.settings(results)]


def _partial_note(parts: list[Part]) -> list[Block]:
    """Say at the top, before any verdict, that some numbers come from a run that has
    not finished (``reproduce --partial``)."""
    unfinished = [f"`{p.name}/{name}` {done} of {total}" for p in parts
                  for name, (done, total) in p.partial.items()]
    if not unfinished:
        return []
    return [Paragraph("**Partial report: the run has not finished.** Cells finished so far, "
                      f"per unfinished experiment: {', '.join(unfinished)}. Their tables, "
                      "figures and verdicts use only those cells: a mean over fewer seeds, "
                      "an empty entry where a cell is still to come.")]


def _marked(name: str, blocks: list[Block], parts: list[Part]) -> list[Block]:
    """An experiment's section, with a line under its heading where it is partial."""
    notes = [Paragraph(f"Partial: `{p.name}` has {p.partial[name][0]} of "
                       f"{p.partial[name][1]} cells so far.")
             for p in parts if name in p.partial]
    return [*blocks[:1], *notes, *blocks[1:]] if notes else blocks


def csv_text(rows: list[Row]) -> str:
    """Rows as CSV: one column per key, nested values (params, points) as JSON."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list))
                         else v for k, v in row.items()})
    return buf.getvalue()


def _write(root: Path, blocks: list[Block], stem: str) -> dict[str, Path]:
    paths = {"md": root / f"{stem}.md"}
    for fig in (b for b in blocks if isinstance(b, Figure)):
        paths[fig.name] = root / fig.path
        atomic.write_bytes(paths[fig.name], fig.png)
    atomic.write_text(paths["md"], render_markdown(blocks))
    return paths


def write_experiment(out_dir: str | Path, experiment: str) -> dict[str, Path]:
    """``<experiment>.md`` (its section of the report), ``.csv`` and its figures, from
    ``<out_dir>/<experiment>.json`` as ``aerobust experiment`` writes it."""
    root = Path(out_dir)
    data = read_rows(root / f"{experiment}.json")
    part = Part(name=root.name, meta={k: data.get(k) for k in ("dataset", "paper_dataset",
                                                                 "config")},
                rows={experiment: data["rows"]}, examples=None, requested=None)
    paths = _write(root, SECTIONS[experiment]([part]), experiment)
    paths["csv"] = root / f"{experiment}.csv"
    atomic.write_text(paths["csv"], csv_text(data["rows"]))
    return paths


def write_report(out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``report_files/*.png`` into ``out_dir``
    (a ``reproduce --out`` folder), each atomically. Returns the paths: "md", "html"
    and one per figure by its name."""
    results = load_results(out_dir)
    blocks = build(results)
    root = results.root
    for part in results.parts:
        for experiment, rows in part.rows.items():
            stem = f"{experiment}.partial" if experiment in part.partial else experiment
            atomic.write_text(root / part.name / f"{stem}.csv", csv_text(rows))
    paths = _write(root, blocks, "report")
    paths["html"] = root / "report.html"
    atomic.write_text(paths["html"], render_html(blocks))
    return paths
