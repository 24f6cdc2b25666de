"""One bounded reader for TOML someone else wrote (pyproject.toml, llama.lock): bounded size, and
nesting too deep for the parser is an error of the file, not a RecursionError on every command
(issue #32 D)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

MAX_TOML_BYTES = 4 << 20  # a pyproject.toml is a few KiB


class TOMLInputError(ValueError):
    """Not TOML, not UTF-8, too large or nested too deeply (the message says which)."""


def read(path: Path, max_bytes: int = MAX_TOML_BYTES) -> dict[str, Any]:
    """The TOML file at ``path`` (``OSError`` passes through: the caller names the file)."""
    with path.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TOMLInputError(f"larger than {max_bytes >> 20} MiB")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise TOMLInputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise TOMLInputError(str(exc)) from None
    except RecursionError:
        raise TOMLInputError("arrays or tables nested too deeply to read") from None
