"""Every Metal library of the real-build corpus (fixtures/real_builds.py) against every cached
llama-cpp-python sdist's tree (verify's tree match, toolchain/verify/tree_match.py): embedded
libraries against what each tree's embed step writes, a ``ggml-metal.metal`` beside the binary
against the tree's file as it is. Prints one row per library; exit 1 when a build the corpus says
matches (llama-cpp-py-sync 0.9756 -> 0.3.31) does not, or one said to match nothing does.

    python bench/bench_tree_match.py [--cache DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures.real_builds import CORPUS, target  # noqa: E402
from tests.conftest import test_cache_dir as cache_dir  # noqa: E402
from toolchain.core.binlayout import MalformedBinary, macho_sections  # noqa: E402
from toolchain.verify.tree_match import digests, match_library  # noqa: E402

EXPECTED = {("llama-cpp-py-sync", "0.9756"): "llama-cpp-python 0.3.31 sdist"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    cache = args.cache or cache_dir()
    trees = digests(cache / "sdists", cache / "tree-match-index")
    print(f"{len(trees)} trees: {', '.join(t.version for t in trees)}")
    print("| build | library | tree | evidence / why |")
    print("|---|---|---|---|")
    wrong = 0
    seen: set[tuple[str, str]] = set()
    for build in CORPUS:
        if (build.project, build.version) in seen:
            continue
        seen.add((build.project, build.version))
        root = target(build, cache)
        base = root if root.is_dir() else root.parent
        files = sorted(p for p in base.rglob("*") if p.is_file() and not p.is_symlink())
        libs: list[tuple[Path, str, bytes]] = []
        for f in files:
            if f.name == "ggml-metal.metal":
                libs.append((f, "beside", f.read_bytes()))
            elif f.suffix in (".dylib", ".so"):
                try:
                    libs += [
                        (f, "embedded", raw)
                        for _arch, raw in macho_sections(f.read_bytes(), "__DATA", "__ggml_metallib")
                    ]
                except MalformedBinary:
                    continue
        names: set[str] = set()
        for f, kind, raw in libs[:1] or []:
            r = match_library(raw, kind, f.name, trees, files)
            tree = r.match.digest.name if r.match else "-"
            names.add(tree)
            print(f"| {build.project} {build.version} | {f.name} ({kind}) | {tree} | {r.describe()[:160]} |")
        if not libs:
            print(f"| {build.project} {build.version} | none | - | no Metal library shipped |")
        want = EXPECTED.get((build.project, build.version), "-")
        wrong += bool(libs) and names != {want}
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
