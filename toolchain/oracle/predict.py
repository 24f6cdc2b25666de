"""``predict``: a model's ops (its test-export-graph-ops file), per GPU-family profile."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..core.git import tree_commit
from ..core.opsinput import checked_lines, write_checked
from ..errors import UsageError
from .probe import run_support
from .profiles import DeviceProfile
from .records import (
    OBSERVED_BY,
    STATEMENT,
    OpPrediction,
    Predictions,
    ProfilePredictions,
)
from .run import probe_for, probe_info, profiles_before_probe

_GENERIC = re.compile(
    r"^(?:name=(?P<name>[^,]*),)?type=(?P<type>[^,]+),ne=(?P<ne>\[[^\]]*\]),"
    r"op_params=(?P<op_params>\[[^\]]*\]),sources=(?P<sources>.*)$"
)


def _strides(line: str) -> tuple[str, ...]:
    """nb of each source from one test-export-graph-ops line (op type ne*4 n p* nsrc (t ne*4 nb*4)* name)."""
    tok = line.split()
    try:
        n_params = int(tok[6])
        i = 7 + n_params
        n_src = int(tok[i])
        i += 1
        out = []
        for _ in range(n_src):
            out.append("[" + ",".join(tok[i + 5 : i + 9]) + "]")
            i += 9
        return tuple(out)
    except (IndexError, ValueError):
        return ()


def predict(
    ops_file: Path,
    tree: Path,
    *,
    cache_dir: Path,
    profiles: Sequence[str] | Sequence[DeviceProfile] | None = None,
    commit: str | None = None,
) -> Predictions:
    """Per-profile predictions for every op of a model's ``test-export-graph-ops`` file.

    The file must come from the same tree (its op and type ids are that tree's enums). Raises
    ``OracleUnavailableError`` when the oracle cannot be made for this tree.
    """
    if not ops_file.is_file():
        raise UsageError(f"no ops file {ops_file}", "write one with test-export-graph-ops -m MODEL -o FILE")
    # whether the oracle can be made for this tree first (plain text, no compile: a tree without the
    # Metal backend is 'oracle unavailable', whatever the file), then the file, before the probe sees it
    chosen = profiles_before_probe(tree, profiles)
    lines = checked_lines(ops_file, tree)
    probe = probe_for(tree, cache_dir)
    with tempfile.TemporaryDirectory(prefix="oracle-") as tmp:
        checked = write_checked(lines, Path(tmp) / "ops-checked.txt")
        rows = run_support(probe, chosen, Path(tmp), test_file=checked)
    out = []
    for profile in chosen:
        mine = [r for r in rows if r.backend == profile.name]
        aligned = len(mine) == len(lines)
        ops = []
        for i, row in enumerate(mine):
            m = _GENERIC.match(row.case)
            g = m.groupdict() if m else {}
            ops.append(
                OpPrediction(
                    i + 1 if aligned else 0,
                    row.op,
                    g.get("name") or "",
                    g.get("type", ""),
                    g.get("ne", ""),
                    g.get("op_params", ""),
                    g.get("sources", ""),
                    _strides(lines[i]) if aligned else (),
                    row.case,
                    row.supported,
                )
            )
        n_ok = sum(o.supported for o in ops)
        out.append(
            ProfilePredictions(
                profile.name,
                f"metal-predicted:{profile.name}",
                profile.family,
                profile.description,
                profile.switches,
                profile.props,
                n_ok,
                len(ops) - n_ok,
                tuple(ops),
            )
        )
    return Predictions(
        OBSERVED_BY,
        STATEMENT,
        str(tree),
        commit or tree_commit(tree),
        str(ops_file),
        probe_info(probe),
        tuple(out),
    )
