"""The tree's own convert_hf_to_gguf.py in its own environment; GGUF validation; convert.json.

The coverage stage calls :func:`convert_architectures` (or :func:`validated_ggufs`).
"""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import ConvertError
from ..models.spec import load_specs, select
from ..records import CONVERT
from .results import Conversion, ConvertResult
from .stage import ALL_TYPES, DEFAULT_TYPES, convert_architectures
from .validate import GGUFCheck, validate_gguf


def validated_ggufs(
    settings: Settings, architectures: list[str] | None = None, types: tuple[str, ...] = DEFAULT_TYPES
) -> dict[tuple[str, str], Path]:
    """(architecture, type) -> validated GGUF path, for the coverage stage; failures are in convert.json."""
    conversion = convert_architectures(select(load_specs(), architectures), types, settings)
    passed = conversion.passed()
    if not passed:
        raise ConvertError("no GGUF could be made", f"see {settings.reports_dir / CONVERT.name}")
    return passed


__all__ = [
    "ALL_TYPES",
    "DEFAULT_TYPES",
    "Conversion",
    "ConvertResult",
    "GGUFCheck",
    "convert_architectures",
    "validate_gguf",
    "validated_ggufs",
]
