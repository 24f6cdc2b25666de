"""The ``archs`` column: the tree's own test-llama-archs, and a parser for its table."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..engine.backends import CoverageBackend
from ..engine.cellcache import locked
from ..engine.outcomes import evidence_of, outcome_from, outcome_json, read_log, status_of
from ..records import CheckResult, DeviceSummary
from .backend_ops import strip_ansi

if TYPE_CHECKING:
    from ..engine.cell import CellRunner, CellSpec


def archs_check(runner: CellRunner, spec: CellSpec, be: CoverageBackend) -> CheckResult:
    assert runner.tools.archs is not None
    arch = spec.model.architecture
    with_b = runner.tools.has("archs-backend")
    key = f"{arch}-{spec.backend}" if with_b else arch
    d = runner.cache_dir / "archs" / re.sub(r"[^\w.-]", "_", key)
    with locked(d.with_suffix(".lock")):
        meta = d / "archs.json"
        if meta.is_file():
            data = json.loads(meta.read_text())
            out = outcome_from(data["outcome"])
            lines = data["lines"]
        else:
            args = [str(runner.tools.archs), "-a", arch, "-s", str(runner.options.seed)]
            if with_b:
                args += ["-b", spec.backend]
            out = runner.run_tool(args, d / "archs.log")
            lines = [strip_ansi(x) for x in read_log(Path(out.log))]
            d.mkdir(parents=True, exist_ok=True)
            meta.write_text(json.dumps({"outcome": outcome_json(out), "lines": lines[-400:]}))
    rows = parse_archs_rows(lines)
    desc = (runner.devices.get(spec.backend) or DeviceSummary(spec.backend)).description
    config = "MoE" if spec.model.variant == "moe" else "Dense"
    mine = [
        r
        for r in rows
        if r["arch"] == arch
        and r["config"] == config
        and (with_b or _device_matches(r["device"], spec.backend, desc, be))
    ]
    bad = status_of(out)
    if bad:
        if mine and all(r["nmse_status"] in ("OK", "SKIP") for r in mine):
            pass  # our row finished before another device's row crashed (runs without -b)
        else:
            return CheckResult(
                "archs",
                bad,
                f"test-llama-archs -a {arch}: {out.describe(runner.options.timeout)}",
                evidence_of(out),
                out.seconds,
                out.args,
                out.log,
            )
    lost = not mine or not mine[0]["nmse_status"]
    if lost and with_b and out.kind in ("ok", "exit") and not any("no tests executed" in x for x in lines):
        # test-llama-archs logs asynchronously: through a pipe its last row can be lost; its exit
        # status still says whether every test of this (architecture, backend) passed
        ok = out.returncode == 0
        return CheckResult(
            "archs",
            "pass" if ok else "wrong",
            f"test-llama-archs -a {arch} -b {spec.backend}: exit {out.returncode} ("
            + ("all passed" if ok else "a test failed")
            + "; its asynchronous log lost the row)",
            () if ok else evidence_of(out),
            out.seconds,
            out.args,
            out.log,
        )
    if not mine:
        return CheckResult(
            "archs",
            "not-applicable",
            f"test-llama-archs has no {config} row for {arch} on {spec.backend}",
            (),
            out.seconds,
            out.args,
            out.log,
        )
    row = mine[0]
    details: dict[str, object] = {
        "nmse": row["nmse"],
        "roundtrip": row["roundtrip"],
        "device": row["device"],
    }
    if row["nmse_status"] == "SKIP":
        return CheckResult(
            "archs",
            "not-applicable",
            f"test-llama-archs skips {arch} ({config})",
            (),
            out.seconds,
            out.args,
            out.log,
            details,
        )
    if row["nmse_status"] != "OK" or row["roundtrip"] == "FAIL":
        return CheckResult(
            "archs",
            "wrong",
            f"test-llama-archs: NMSE {row['nmse_status']} {row['nmse']}, roundtrip {row['roundtrip']}",
            (row["raw"],),
            out.seconds,
            out.args,
            out.log,
            details,
        )
    return CheckResult(
        "archs",
        "pass",
        f"test-llama-archs: NMSE {row['nmse']} vs CPU, roundtrip {row['roundtrip']}",
        (),
        out.seconds,
        out.args,
        out.log,
        details,
    )


_ARCH_ROW = re.compile(
    r"^\|\s*(?P<arch>[\w.-]+)\|\s*(?P<device>[^|]*?)\|\s*(?P<config>Dense|MoE)\|(?P<rest>.*)$"
)


def parse_archs_rows(lines: list[str]) -> list[dict[str, str]]:
    """Rows of test-llama-archs' table: ``|arch|device|config|   OK (1.2e-07)|OK|``."""
    rows = []
    for raw in lines:
        line = strip_ansi(raw).strip()
        m = _ARCH_ROW.match(line)
        if not m:
            continue
        cells = [c.strip() for c in m["rest"].split("|")]
        nmse_cell = cells[0] if cells else ""
        status = nmse_cell.split()[0] if nmse_cell else ""
        value = re.search(r"\(([^)]*)\)", nmse_cell)
        rows.append(
            {
                "arch": m["arch"].strip(),
                "device": m["device"].strip(),
                "config": m["config"],
                "nmse_status": status,
                "nmse": value.group(1) if value else "",
                "roundtrip": cells[1].split()[0] if len(cells) > 1 and cells[1] else "",
                "raw": line,
            }
        )
    return rows


def _device_matches(device_col: str, name: str, description: str, be: CoverageBackend) -> bool:
    if description and description in device_col:
        return True
    # no description known (no verify.json): the name itself, e.g. "BLAS" in "OpenBLAS"
    return name.lower() in device_col.lower()
