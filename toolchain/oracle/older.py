"""The older tree ``oracle validate`` compares with, to tell a stale ``docs/ops/Metal.csv`` from a
wrong oracle: a folder, an older llama-cpp-python sdist (imported into its mirror like any source)
or a ref of the tree's own repository, exported once into ``<cache>/oracle/trees/<commit>``."""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

from ..config import NO_ORACLE_OLDER, Settings
from ..core.git import run_git
from ..core.locking import exclusive
from ..errors import ToolchainError, UsageError
from ..source import SourceSpec, mirror_of
from ..source import resolve as resolve_source
from ..source.spec import SDIST_PROJECT


def older_tree(
    tree: Path,
    settings: Settings,
    *,
    tree_dir: Path | None = None,
    requirement: str | None = None,
    ref: str | None = None,
) -> tuple[Path | None, str | None]:
    """(the older tree, its commit when we exported it): ``tree_dir`` as given, else ``requirement``
    (an sdist) or ``ref`` (of ``tree``'s repository), else ``[tool.llama-toolchain] oracle-older``;
    (None, None) when the setting is ``"none"``."""
    if tree_dir:
        return tree_dir.resolve(), None
    if not (requirement or ref) and settings.oracle_older != NO_ORACLE_OLDER:
        # a llama-cpp-python requirement or a ref
        if settings.oracle_older.replace("_", "-").startswith(SDIST_PROJECT):
            requirement = settings.oracle_older
        else:
            ref = settings.oracle_older
    repo = tree
    if requirement:
        version = requirement.split("==")[-1]
        resolved = resolve_source(SourceSpec(kind="pypi-sdist", location=requirement, ref=version), settings)
        repo, ref = mirror_of(resolved, settings).path, resolved.commit
    if not ref:
        return None, None
    try:
        commit = run_git(
            repo, ["rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}"], timeout=60
        ).strip()
    except ToolchainError:
        raise UsageError(
            f"older tree {ref}: not a commit of the repository at {repo}",
            "fetch it first, or give --older-tree PATH",
        ) from None
    dest = settings.cache_dir / "oracle" / "trees" / commit
    with exclusive(settings.cache_dir / "oracle" / f".tree-{commit}.lock", wait=600):
        if not (dest / "ggml").is_dir():
            with tempfile.TemporaryDirectory() as tmp:
                archive = Path(tmp) / "tree.tar"
                with archive.open("wb") as fh:
                    try:
                        run_git(repo, ["archive", "--format=tar", commit], timeout=600, stdout=fh)
                    except ToolchainError as exc:
                        raise UsageError(
                            f"older tree {ref}: git archive {commit} failed: "
                            + " ".join(exc.message.split()[-30:]),
                            "give --older-tree PATH",
                        ) from None
                dest.mkdir(parents=True, exist_ok=True)
                with tarfile.open(archive) as tar:
                    tar.extractall(dest, filter="data")
    return dest, commit
