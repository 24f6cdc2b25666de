"""Build stage: configure and build only the needed targets of a checked-out tree; write the manifest."""

from __future__ import annotations

from .manifest import Artifact, BuildManifest
from .stage import BuildRequest, run_build

__all__ = ["Artifact", "BuildManifest", "BuildRequest", "run_build"]
