"""``predict`` (a model's ops, per GPU family) and ``validate_tree`` (against docs/ops/*.csv)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import OracleUnavailableError
from .extract import Extraction, ExtractionFailed, extract
from .probe import Probe, ProbeUnavailable, ensure_probe
from .profiles import DeviceProfile, default_profiles, select, unmodelled
from .records import (
    CutInfo,
    ProbeInfo,
)

METAL_CSV = Path("docs/ops/Metal.csv")
MIN_AGREEMENT = 0.95


def unavailable(tree: Path, reason: str) -> OracleUnavailableError:
    return OracleUnavailableError(
        f"Metal oracle unavailable for {tree}: {reason}",
        "the supports_op of this commit cannot be modelled faithfully; no predictions are made for it",
    )


def profiles_before_probe(
    tree: Path, profiles: Sequence[str] | Sequence[DeviceProfile] | None
) -> tuple[DeviceProfile, ...]:
    """Cut and profiles first (plain text, no compile): a tree the oracle would have to guess for
    is refused before a probe is built for it."""
    try:
        ex = extract(tree)
        if profiles and all(isinstance(p, DeviceProfile) for p in profiles):
            given = tuple(p for p in profiles if isinstance(p, DeviceProfile))
            missing = unmodelled(given, ex.props_used)
            if missing:
                raise ExtractionFailed(
                    f"supports_op reads {', '.join(missing)}, which the given profile(s) "
                    f"{', '.join(p.name for p in given)} do not model"
                )
            return given
        names = [p for p in profiles or () if isinstance(p, str)]
        return select(default_profiles(tree, ex.props_fields, ex.props_used), names or None)
    except ExtractionFailed as exc:
        raise unavailable(tree, exc.reason) from exc


def probe_for(tree: Path, cache_dir: Path, *, supports_op_from: Path | None = None) -> Probe:
    try:
        return ensure_probe(
            tree, cache_dir, supports_op_from=supports_op_from, compiler_cache_dir=cache_dir / "ccache"
        )
    except ProbeUnavailable as exc:
        raise unavailable(tree, exc.reason) from exc


def probe_info(probe: Probe) -> ProbeInfo:
    ex: Extraction = probe.extraction
    return ProbeInfo(
        probe.key,
        str(probe.executable),
        probe.built_now,
        round(probe.seconds, 2),
        str(ex.tree),
        tuple(CutInfo(f.name, f.file, f.first_line, f.last_line, f.language) for f in ex.functions),
        ex.props_used,
    )
