"""``python -m toolchain.coverage …`` = ``llama-toolchain coverage …``."""

from __future__ import annotations

import sys

from .. import cli

sys.exit(cli.main(["coverage", *sys.argv[1:]]))
