"""The coverage reports: ``coverage.json`` (the record), ``coverage.md``, ``junit-coverage.xml``,
``coverage.html`` (self-contained: heatmap architectures × ops, and the matrix), and the
``--baseline`` diff with its one-line verdict.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from ...core.jsonio import to_jsonable
from ...records import COVERAGE, write_report
from ..records import BROKEN, REPORT_KIND, Cell, CoverageRun, OpResult, TensorShape, whose_suffix
from .baseline import diff_baseline as diff_baseline
from .baseline import load_baseline as load_baseline
from .baseline import rank
from .fromjson import cell_from_json as cell_from_json
from .html import html_page
from .summary import ICONS, step_summary
from .sweep import markdown as sweep_markdown


# --- JSON ------------------------------------------------------------------------------------------
def cell_json(cell: Cell) -> dict[str, Any]:
    data = to_jsonable(replace(cell, ops=()))
    data["ops"] = [{**to_jsonable(o), "types": list(o.types), "key": o.key} for o in cell.ops]
    return dict(data)


def run_json(run: CoverageRun) -> dict[str, Any]:
    data = to_jsonable(run)
    data["cells"] = [cell_json(c) for c in run.cells]
    return dict(data)


def write_json(run: CoverageRun, path: Path) -> Path:
    return write_report(path, REPORT_KIND, run_json(run))


# --- Markdown ---------------------------------------------------------------------------------------
def _shape(o: OpResult) -> str:
    if o.output is None:
        return o.params

    def fmt(t: TensorShape) -> str:
        return f"{t.type}[{','.join(map(str, t.ne))}]"

    srcs = ", ".join(fmt(s) for s in o.sources)
    return f"{fmt(o.output)} ← {srcs}"


def markdown(run: CoverageRun) -> str:
    src = run.source
    lines = [f"# Kernel coverage: {src.get('location') or '?'} @ {str(src.get('commit') or '?')[:12]}", ""]
    if not run.complete:
        lines += ["> **INCOMPLETE** — the run was interrupted" if run.interrupted else "> **INCOMPLETE**", ""]
    if run.verdict:
        lines += [f"**Verdict:** {run.verdict}", ""]
    for note in run.notes:
        lines += [f"> {note}", ""]
    devs = "; ".join(f"{d.backend}: {d.description or '?'} ({d.device_class})" for d in run.devices)
    lines += [
        f"Profile `{run.profile}`, device class **{run.device_class}** ({devs}); "
        f"{len(run.cells)} cells in {run.seconds:.0f} s; observed by `{run.observed_by}`.",
        "",
        "Counts: "
        + ", ".join(
            f"{ICONS.get(k, '')} {k} {v}" for k, v in sorted(run.counts.items(), key=lambda kv: rank(kv[0]))
        ),
        "",
    ]
    missing_cols = [c for c in run.columns if not c.available or c.reason]
    if missing_cols:
        lines += [
            "Columns:",
            *[
                f"- `{c.column}`: {'not computed: ' if not c.available else ''}{c.reason}"
                for c in missing_cols
            ],
            "",
        ]
    # matrix
    rows: dict[tuple[str, str], dict[str, Cell]] = defaultdict(dict)
    for c in run.cells:
        rows[(c.architecture + (f"-{c.variant}" if c.variant else ""), c.weight_type)][c.backend] = c
    lines += [
        "| architecture | type | " + " | ".join(run.backends) + " |",
        "|---|---|" + "---|" * len(run.backends),
    ]
    for (arch, wtype), by_b in rows.items():
        cells = []
        for b in run.backends:
            got = by_b.get(b)
            cells.append(f"{ICONS.get(got.status, '')} {got.status}{whose_suffix(got)}" if got else "")
        lines.append(f"| {arch} | {wtype} | " + " | ".join(cells) + " |")
    lines.append("")
    bad = [c for c in run.cells if c.status not in ("pass", "not-applicable")]
    if bad:
        lines += ["## Findings", ""]
        for c in bad[:200]:
            lines.append(f"- **{c.id}** — {c.status}{whose_suffix(c)}: {c.reason}")
            by_op: dict[str, list[OpResult]] = defaultdict(list)
            for o in c.unsupported_ops:
                by_op[o.op].append(o)
            for op, items in list(by_op.items())[:16]:
                shapes = "; ".join(_shape(o) for o in items[:6]) + (
                    f"; … {len(items) - 6} more" if len(items) > 6 else ""
                )
                lines.append(f"  - unsupported `{op}` ×{len(items)}: {shapes}")
            if len(by_op) > 16:
                lines.append(
                    f"  - … {len(by_op) - 16} more unsupported ops (coverage.json has every case string)"
                )
            for o in c.failing_ops[:5]:
                lines.append(f"  - {o.test} `{o.op}` {_shape(o)}: {o.message}")
        lines.append("")
    if run.baseline:
        d = run.baseline
        lines += [
            f"## Against the baseline ({d.baseline}, commit {d.baseline_commit[:12]})",
            "",
            f"**{d.verdict}**",
            "",
        ]
        for title, changes in (
            ("Newly broken", d.newly_broken),
            ("Fixed", d.fixed),
            ("Other changes", d.changed),
        ):
            if changes:
                lines += [
                    f"### {title}",
                    *[f"- {c.id}: {c.before} → {c.after} ({c.detail})" for c in changes],
                    "",
                ]
        if d.new_unsupported:
            lines += ["### New unsupported shapes", *[f"- `{s}`" for s in d.new_unsupported[:100]], ""]
            if len(d.new_unsupported) > 100:
                lines.append(f"- … {len(d.new_unsupported) - 100} more")
        if d.missing_cells:
            lines += ["### Cells of the baseline not in this run", ", ".join(d.missing_cells[:60]), ""]
    if run.sweep is not None:
        lines += sweep_markdown(run.sweep)
    if run.models_skipped:
        lines += ["## Models not tested", *[f"- {s}" for s in run.models_skipped], ""]
    return "\n".join(_md_line(line) for line in lines) + "\n"


def _md_line(line: str) -> str:
    """One entry of ``lines`` as one Markdown line: text from cells, logs and trees (a reason, a
    cell id, a note) can neither start a line of its own (a newline would forge a heading or a
    verdict) nor open raw HTML (``<script>``, ``<img onerror>``: GitHub and most viewers render
    HTML in Markdown); ``<`` is written as the entity, which renders as itself."""
    return " ".join(line.splitlines()).replace("<", "&lt;")


# --- JUnit ------------------------------------------------------------------------------------------
def junit(run: CoverageRun) -> str:
    suite = ET.Element("testsuite", name="kernel-coverage", tests=str(len(run.cells)))
    failures = errors = skipped = 0
    for c in run.cells:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"coverage.{c.backend}",
            name=c.id,
            time=f"{c.durations.get('total', 0.0):.3f}",
        )
        text = "\n".join(
            [
                c.reason,
                *[f"{k.column}: {k.status}: {k.summary}" for k in c.checks],
                *[e for k in c.checks for e in k.evidence],
            ]
        )
        if c.status in BROKEN:
            failures += 1
            ET.SubElement(case, "failure", message=f"{c.status}: {c.reason}"[:500], type=c.status).text = text
        elif c.status == "error":
            errors += 1
            ET.SubElement(case, "error", message=c.reason[:500], type="error").text = text
        elif c.status in ("unverifiable", "not-applicable"):
            skipped += 1
            ET.SubElement(case, "skipped", message=f"{c.status}: {c.reason}"[:500])
        else:
            ET.SubElement(case, "system-out").text = text
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    if not run.complete:
        ET.SubElement(suite, "properties").append(ET.Element("property", name="incomplete", value="true"))
    for element in suite.iter():  # ElementTree writes any character; XML 1.0 forbids some
        element.text = _xml_chars(element.text) if element.text else element.text
        for key, value in element.attrib.items():
            element.attrib[key] = _xml_chars(value)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


# characters XML 1.0 cannot carry (https://www.w3.org/TR/xml/#charsets): C0 controls but tab,
# newline and carriage return, lone surrogates, U+FFFE and U+FFFF
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_chars(text: str) -> str:
    """``text`` with each character XML cannot carry shown as a visible escape (``\\x1b``)."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


# --- all ---------------------------------------------------------------------------------------------
def write_set(files: dict[Path, str]) -> None:
    """Write ``files`` as one set (#32 I): every file goes to a temporary beside it first; only
    when all are on disk do they replace the old ones. A full disk while writing leaves the old
    set as it was (the temporaries removed); should a replace fail midway, ``INCOMPLETE`` beside
    the reports names the set as mixed."""
    done: dict[Path, str] = {}
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            done[path] = tmp
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        for tmp in done.values():
            Path(tmp).unlink(missing_ok=True)
        raise
    marker = next(iter(files)).parent / "INCOMPLETE"
    try:
        for path, tmp in done.items():
            os.replace(tmp, path)
    except BaseException:
        marker.write_text("the report set here was cut short while being replaced: run again\n")
        raise
    marker.unlink(missing_ok=True)


def write_reports(run: CoverageRun, reports_dir: Path) -> dict[str, Path]:
    paths = {
        "json": reports_dir / COVERAGE.name,
        "md": reports_dir / "coverage.md",
        "junit": reports_dir / "junit-coverage.xml",
        "html": reports_dir / "coverage.html",
        "summary": reports_dir / "coverage-summary.md",
    }
    short = step_summary(run)
    texts = {
        "json": json.dumps(
            {"schema_version": COVERAGE.schema_version, "kind": REPORT_KIND, **run_json(run)}, indent=2
        )
        + "\n",
        "md": markdown(run),
        "junit": junit(run),
        "html": html_page(run),
        "summary": short,
    }
    write_set({paths[k]: text for k, text in texts.items()})
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:  # the short form: the full coverage.md outgrows GitHub's 1 MiB per step
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(short)
    return paths
