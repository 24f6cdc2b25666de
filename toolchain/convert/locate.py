"""Where the convert stage's inputs and outputs are: the build's programs, the GGUF paths."""

from __future__ import annotations

from pathlib import Path

from ..builder.manifest import last_build_dir
from ..config import Settings
from ..core.tree import QUANTIZE
from ..errors import ConvertError
from ..models.build import TinyModel


def build_bins(settings: Settings) -> list[Path]:
    """The work dir's build bin dirs, best first: the last successful build (build-manifest.json),
    then the others, newest first."""
    out: list[Path] = []
    last = last_build_dir(settings.reports_dir)
    if last is not None and (last / "bin").is_dir():
        out.append(last / "bin")
    if settings.build_root.is_dir():
        others = sorted(
            (p for p in settings.build_root.glob("*/bin") if p.is_dir()),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        out += [p for p in others if p not in out]
    return out


def find_quantize(settings: Settings, bins: list[Path] | None = None) -> Path | None:
    for bin_dir in build_bins(settings) if bins is None else bins:
        for name in QUANTIZE:
            if (bin_dir / name).is_file():
                return bin_dir / name
    return None


def gguf_path(settings: Settings, model: TinyModel, outtype: str) -> Path:
    root = (settings.work_dir / "models").resolve()
    path = (root / f"{model.name}-{model.content_hash[:12]}" / f"{model.name}-{outtype}.gguf").resolve()
    if not path.is_relative_to(root):
        raise ConvertError(f"{path} is outside {root}")
    return path
