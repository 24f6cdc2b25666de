"""``python -m toolchain.coverage …`` = ``llama-toolchain coverage …`` (works before the stage is listed
in ``toolchain.cli.STAGE_COMMANDS``)."""

from __future__ import annotations

import sys

from .. import cli

if "toolchain.coverage.cli" not in cli.STAGE_COMMANDS:
    cli.STAGE_COMMANDS = (*cli.STAGE_COMMANDS, "toolchain.coverage.cli")  # type: ignore[assignment,unused-ignore]

sys.exit(cli.main(["coverage", *sys.argv[1:]]))
