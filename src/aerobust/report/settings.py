"""Provenance: what ran, on which data, with which settings, software and time. The
header of the report and its closing Settings section, so a reader can judge (and
redo) every number."""

from __future__ import annotations

import re
from typing import Any

from aerobust.names import OPTIONAL_EXPERIMENTS
from aerobust.report.blocks import Block, Heading, Paragraph, Table
from aerobust.report.load import EXPERIMENTS, Part, Results
from aerobust.report.numbers import GAMMA, LAMBDA, duration


def _value(v: Any) -> str:
    """A config value in a table cell; None means the data family's default."""
    if v is None:
        return "default"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def _versions(versions: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "-"


def _short(checksum: str) -> str:
    """A checksum cut to 16 hex digits: enough to tell data apart at a glance, narrow
    enough for the header table (the Settings section gives it whole)."""
    algorithm, sep, digest = checksum.partition(":")
    return f"{algorithm}:{digest[:16]}..." if sep and len(digest) > 16 else checksum


def _resumed(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The invocations a run's wall time sums, when there was more than one."""
    sessions = manifest.get("sessions", [])
    return sessions if len(sessions) > 1 else []


def _over_sessions(manifest: dict[str, Any]) -> str:
    """A resumed run's wall time sums its invocations; say so, and what it leaves out."""
    sessions = _resumed(manifest)
    if not sessions:
        return ""
    lost = sum(s.get("finished") is None for s in sessions)
    note = f"; {lost} interrupted, their time not counted" if lost else ""
    return f" over {len(sessions)} invocations of `reproduce` (see Settings{note})"


def _session_table(manifest: dict[str, Any]) -> list[Block]:
    """Each invocation on the folder, when there was more than one."""
    sessions = _resumed(manifest)
    if not sessions:
        return []
    return [Paragraph("Invocations on this folder with these settings:"),
            Table(["started", "command", "wall time"],
                  [[s.get("started", "-"), f"`{s.get('command', '-')}`",
                    "interrupted" if s.get("finished") is None else duration(s.get("seconds"))]
                   for s in sessions],
                  [False, False, True])]


def _seeds(meta: dict[str, Any]) -> str:
    """The seed axis of a part: "0", or "0-2" for three seeds from 0."""
    first, count = meta.get("seed", 0), meta.get("seeds", 1)
    return str(first) if count == 1 else f"{first}-{first + count - 1}"


FEWER_SEEDS = {"cw_seeds": "CW cells (Table 1)", "audit_seeds": "audit cells"}


def _fewer_seeds(part: Part) -> list[str]:
    """The cells that ran fewer seeds than the part, as the config says: the costliest
    ones, cut to keep the run within its time budget, never silently."""
    config, seeds = part.meta.get("config", {}), part.meta.get("seeds", 1)
    first = part.meta.get("seed", 0)
    return [f"`{part.name}`: {what} ran seed{'s' if n > 1 else ''} "
            f"{_seeds({'seed': first, 'seeds': n})} of {_seeds(part.meta)} (`{name}` {n}), "
            "being the costliest cells of the run (their measured times are in "
            "docs/reproduce.md); tables mark such cells \"(n=...)\""
            for name, what in FEWER_SEEDS.items()
            if (n := config.get(name) or seeds) < seeds]


def summary(results: Results) -> list[Block]:
    """Section 1: the run as a whole, then one line per part."""
    m = results.manifest
    finished = (f"finished {m['finished']}, wall time {duration(m.get('seconds'))}"
                f"{_over_sessions(m)}"
                if m.get("finished") else "not finished (interrupted, or still running)")
    parts = Table(["Part", "dataset", "paper reference", "data checksum", "config hash",
                   "seeds", "experiments"],
                  [[f"`{p.name}`", f"`{p.meta.get('dataset', '-')}`", p.paper_name,
                    f"`{_short(p.meta.get('data_checksum', '-'))}`",
                    f"`{p.meta.get('config_hash', '-')}`", _seeds(p.meta),
                    f"{len(p.rows)} of {_expected(p)}"]
                   for p in results.parts],
                  [False] * 5 + [True, True])
    return [Paragraph(f"Preset `{m.get('preset', '-')}`; command `{m.get('command', '-')}`."),
            Paragraph(f"Started {m.get('started', '-')}, {finished}."),
            Paragraph(f"Versions: {_versions(m.get('versions', {}))}."),
            parts,
            *(Paragraph(f"Fewer seeds: {line}.") for p in results.parts
              for line in _fewer_seeds(p))]


def _sweep_note(part: Part) -> Paragraph:
    """What the sensitivity sweep ran on, which may be less than the main tables."""
    rows = part.rows["sensitivity"]
    sites = [r for r in rows if r.get("table") != "table3"]
    sizes = {r.get("attack"): r.get("n") for r in sites}
    seeds = sorted({r["seed"] for r in rows if r.get("table") == "table3"})
    return Paragraph(
        f"`{part.name}`, sensitivity sweep: the first {sizes.get('pgd', '-')} test images "
        f"(CW: {sizes.get('cw', '-')}), seed {min((r['seed'] for r in sites), default='-')}, "
        f"fewer than the main tables where `--n` is larger; Table 3 on seeds "
        f"{', '.join(map(str, seeds)) or '-'}.")


def _expected(part: Part) -> int:
    """How many experiments the part was to run: the default ones, and an optional one
    (the sensitivity sweep) where it was asked for or ran."""
    asked = part.requested or ()
    return len(EXPERIMENTS) + sum(1 for e in OPTIONAL_EXPERIMENTS
                                  if e in asked or e in part.rows)


def _metric(metrics: dict[str, Any]) -> str:
    """The test metric a run is judged by: accuracy for classifiers, MSE for an AE."""
    shown = []
    if metrics.get("test_accuracy") is not None:
        shown.append(f"accuracy {100 * metrics['test_accuracy']:.2f}%")
    if metrics.get("test_mse") is not None:
        shown.append(f"MSE {metrics['test_mse']:.5f}")
    return ", ".join(shown) or "-"


def _training(run: dict[str, Any]) -> str:
    """Loss, joint method with its weight, adversarial settings: what tells runs of one
    architecture apart (Table 3's lambda and gamma, advC's PGD)."""
    loss = run.get("loss") or "-"
    if kwargs := run.get("loss_kwargs"):
        loss += f" ({', '.join(f'{k} {_value(v)}' for k, v in sorted(kwargs.items()))})"
    how = [loss]
    if run.get("method") == "regularization":
        how.append(f"regularization, {LAMBDA}={_value(run.get('lam'))}")
    elif run.get("method") == "alternating":
        how.append(f"alternating, {GAMMA}={_value(run.get('gamma'))}")
    if adv := run.get("adversarial"):
        ramp = f", ramped up over {adv['ramp_epochs']} epochs" if adv.get("ramp_epochs") else ""
        how.append(f"PGD adversarial (eps {_pixels(adv.get('eps'))}, {adv.get('steps')} "
                   f"steps of {_pixels(adv.get('step_size'))}{ramp})")
    return ", ".join(how)


def _pixels(value: Any) -> str:
    """A [0,1]-unit size in the report's 0-255 units."""
    return f"{255 * value:.4g}/255" if isinstance(value, (int, float)) else "-"


def _runs(part: Part) -> Table:
    header = ["run", "arch", "kind", "training", "epochs", "seed", "test metric"]
    return Table(header, [[f"`{name}`", run.get("arch", "-"), run.get("kind", "-"),
                           _training(run), _value(run.get("epochs")), _value(run.get("seed")),
                           _metric(run.get("metrics", {}))]
                          for name, run in sorted(part.meta.get("runs", {}).items())],
                 [False] * 4 + [True, True, False])


def _parallel(results: Results) -> str:
    """Why the sum can exceed the wall time: experiments ran side by side (the recorded
    commands are the authority on how the run was made)."""
    m = results.manifest
    commands = [s.get("command") or "" for s in m.get("sessions", [])] or [m.get("command", "")]
    jobs = max((int(j) for c in commands for j in re.findall(r"--jobs[= ](\d+)", c)), default=1)
    return f" (up to {jobs} experiments at a time, `--jobs {jobs}`)" if jobs > 1 else ""


def _on_ray(results: Results) -> str:
    """Which experiments a ``--backend ray`` session finished (by the sessions' commands
    and times, the record of how the run was made), and what their seconds mean there."""
    spans = [(s.get("started") or "", s.get("finished") or "~")  # "~": after any date
             for s in results.manifest.get("sessions", [])
             if re.search(r"--backend[= ]ray", s.get("command") or "")]
    names = [e for e in EXPERIMENTS
             if any(any(a <= p.meta.get("experiments", {}).get(e, {}).get("finished", "") <= b
                        for a, b in spans) for p in results.parts)]
    if not names:
        return ""
    return (f" Finished on a Ray cluster (`--backend ray`): {', '.join(names)}; there an "
            "experiment's time runs from the start of the cluster run until its last cell "
            "came back, and the experiments overlap.")


def settings(results: Results) -> list[Block]:
    """Section 6: config per part, trained runs, seconds per experiment, versions."""
    parts = results.parts
    names = [f"`{p.name}`" for p in parts]
    fields = list(dict.fromkeys(k for p in parts for k in p.meta.get("config", {})))
    blocks: list[Block] = [
        Heading(3, "Configuration"),
        Paragraph("Every setting as it ran: the data family's profile (the paper's and "
                  "docs/design.md's defaults), the preset's and the user's own, resolved. "
                  "`default` (the data folder only): the standard location. Epsilons in 0-255 "
                  "pixel units."),
        Table(["field", *names],
              [["data checksum", *(f"`{p.meta.get('data_checksum', '-')}`" for p in parts)],
               ["config hash", *(f"`{p.meta.get('config_hash', '-')}`" for p in parts)],
               *([f, *(_value(p.meta.get("config", {}).get(f, "-")) for p in parts)]
                 for f in fields)]),
    ]
    blocks += [_sweep_note(p) for p in parts if "sensitivity" in p.rows]
    for p in parts:
        blocks += [Heading(3, f"Trained runs: `{p.name}`"), _runs(p)]
    timed = [*EXPERIMENTS, *(e for e in OPTIONAL_EXPERIMENTS
                             if any(e in p.meta.get("experiments", {}) for p in parts))]
    seconds = [[p.meta.get("experiments", {}).get(e, {}).get("seconds") for p in parts]
               for e in timed]
    time_rows = [[e, *("not run" if s is None else duration(s) for s in row)]
                 for e, row in zip(timed, seconds, strict=True)]
    totals = [sum(row[i] or 0 for row in seconds) for i in range(len(parts))]
    time_rows.append(["**sum**", *(f"**{duration(t)}**" for t in totals)])
    libraries = sorted({k for p in parts for k in p.meta.get("versions", {})}
                       | set(results.manifest.get("versions", {})))
    sources = [results.manifest, *(p.meta for p in parts)]
    blocks += [
        Heading(3, "Time"),
        Table(["experiment", *names], time_rows, [False] + [True] * len(parts)),
        Paragraph(f"Each experiment's own time, training the models it was first to need "
                  f"included. Wall time of the whole run, example images included: "
                  f"{duration(results.manifest.get('seconds'))}{_parallel(results)}."
                  f"{_on_ray(results)}"),
        *_session_table(results.manifest),
        Heading(3, "Versions"),
        Table(["library", "reproduce", *names],
              [[lib, *(s.get("versions", {}).get(lib, "-") for s in sources)]
               for lib in libraries]),
    ]
    return blocks
