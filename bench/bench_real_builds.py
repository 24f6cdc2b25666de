"""The whole real-build corpus (fixtures/real_builds.py): download each wheel once, verify it with
the metal profile (static only), print wheel, version, era, verdict, and whether it is the
expected one. Exit 1 when any verdict or era differs from the corpus's expectation.

    python bench/bench_real_builds.py [--cache DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures.real_builds import CORPUS, target  # noqa: E402
from tests.conftest import test_cache_dir as cache_dir  # noqa: E402
from toolchain.profiles import PROFILES  # noqa: E402
from toolchain.verify import verify_path  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    cache = args.cache or cache_dir()
    wrong = 0
    print("| wheel | version | path | era | verdict | expected | seconds |")
    print("|---|---|---|---|---|---|---|")
    for build in CORPUS:
        start = time.monotonic()
        v = verify_path(target(build, cache), PROFILES["metal"], runtime=False)
        ok = v.ok and v.verified
        verdict = (
            "pass"
            if ok
            else "fail: " + ", ".join(sorted({c.name for c in v.failures}) or ["nothing verified"])
        )
        right = (
            ok == build.ok and v.era == build.era and (ok or {c.name for c in v.failures} == build.failing)
        )
        wrong += not right
        print(
            f"| {build.project} | {build.version} | {build.path or '.'} | {v.era or '-'} | {verdict} | "
            f"{'yes' if right else 'NO'} | {time.monotonic() - start:.1f} |"
        )
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
