"""Run the tree's own convert_hf_to_gguf.py on many models in one Python process.

A standalone script for the converter environment: it imports only the standard library and
the tree (``convert_hf_to_gguf`` and, through it, the tree's ``conversion`` package and
``gguf-py``). Each job calls the script's own ``main()`` with the arguments a person would type,
so the conversion path is exactly the command-line one; only the interpreter start-up and the
imports (torch, transformers: ~5 s) are paid once. Output: one ``@@result {json}`` line per job.

    worker.py TREE JOBS [CLAIMS N]

With ``CLAIMS`` (a directory), several workers share one job list, worker ``N`` claiming each job
before it runs it (``toolchain/core/claims.py``).

A job's failure (SystemExit, an exception) is that job's verdict; the loop goes on.
"""

from __future__ import annotations

import io
import json
import logging
import runpy
import sys
import time
import traceback
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

RESULT_PREFIX = "@@result "
CLAIMS = Path(__file__).parents[1] / "core" / "claims.py"  # standard library only: run by its path
TAIL = 15


class _Tail(logging.Handler):
    """Keeps the last records the converter logged, for the verdict of a failed job."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}:{record.name}:{record.getMessage()}")
        del self.lines[:-TAIL]


def convert_one(module: Any, job: dict[str, Any], tail: _Tail) -> dict[str, Any]:
    tail.lines.clear()
    out = Path(job["outfile"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.unlink(missing_ok=True)
    argv = ["convert_hf_to_gguf.py", job["model_dir"], "--outtype", job["outtype"], "--outfile", str(tmp)]
    start = time.monotonic()
    old_argv = sys.argv
    sys.argv = argv
    captured = io.StringIO()
    try:
        with redirect_stdout(captured):
            module.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code != 0:
            return {
                "status": "error",
                "error": f"converter exited with status {code}",
                "tail": tail.lines[-TAIL:],
                "seconds": time.monotonic() - start,
            }
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        lines = traceback.format_exc().splitlines()
        return {
            "status": "error",
            "error": f"{type(exc).__name__}: {exc}",
            "tail": lines[-TAIL:],
            "seconds": time.monotonic() - start,
        }
    finally:
        sys.argv = old_argv
    if not tmp.is_file():
        return {
            "status": "error",
            "error": "the converter wrote no file",
            "tail": tail.lines[-TAIL:],
            "seconds": time.monotonic() - start,
        }
    tmp.replace(out)
    return {"status": "ok", "seconds": time.monotonic() - start, "tail": tail.lines[-3:]}


def main(argv: list[str]) -> int:
    tree = Path(argv[1]).resolve()
    jobs = json.loads(Path(argv[2]).read_text())
    shared = runpy.run_path(str(CLAIMS))
    claims, worker = shared["worker_args"](argv, 3)
    sys.path.insert(0, str(tree))
    start = time.monotonic()
    import convert_hf_to_gguf as module  # type: ignore[import-not-found]  # the tree's own script (it puts the tree's gguf-py first)

    tail = _Tail()
    logging.getLogger().addHandler(tail)
    print(
        RESULT_PREFIX
        + json.dumps(
            {
                "startup_seconds": time.monotonic() - start,
                "gguf_file": getattr(sys.modules.get("gguf"), "__file__", ""),
            }
        ),
        flush=True,
    )
    for index, job in enumerate(jobs):
        if not shared["claim"](claims, index, worker):
            continue
        result = convert_one(module, job, tail)
        result["job"] = job["id"]
        print(RESULT_PREFIX + json.dumps(result, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
