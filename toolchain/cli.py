"""``llama-toolchain <stage> …`` (also ``python -m toolchain``).

Each stage package has a ``cli.py`` with ``add_parser(subparsers)``; the parser it adds sets
``func(args) -> int``. The nox sessions are thin wrappers over these commands.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys
from pathlib import Path

from .config import Settings, check_settings, load_settings, resolve_path
from .core import signals
from .core.diskfull import disk_full_error, is_disk_full
from .errors import ConfigError, InterruptedError_, ToolchainError
from .log import LOG
from .option_types import harden

# Order = the pipeline, as shown in --help.
STAGE_COMMANDS = (
    "toolchain.source.cli",
    "toolchain.builder.cli",
    "toolchain.verify.cli",
    "toolchain.models.cli",
    "toolchain.convert.cli",
    "toolchain.coverage.cli",
    "toolchain.oracle.cli",
    "toolchain.dryrun.cli",
    "toolchain.doctor.cli",
)


def settings_from(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.project)
    if getattr(args, "work_dir", None):
        work_dir = resolve_path(args.work_dir, Path.cwd(), "--work-dir", "pass a directory")
        settings = settings.with_overrides(work_dir=work_dir)
        check_settings(settings)
    return settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llama-toolchain",
        description="Build and verify llama.cpp (Metal on Apple Silicon), map its kernel coverage, diagnose failures.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in STAGE_COMMANDS:
        importlib.import_module(module).add_parser(sub)
    return harden(parser)  # checked option types, paths against the cwd (toolchain/options.py)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:  # everything after `--` goes to the stage (e.g. CMake -D options)
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    args.passthrough = tuple(passthrough)
    LOG.quiet = bool(getattr(args, "quiet", False))
    signals.install()  # SIGTERM / SIGHUP handled like Ctrl-C (exit 143 / 129)
    try:
        return int(args.func(args))
    except ToolchainError as exc:
        LOG.error(str(exc), title=exc.title)
        if isinstance(exc, InterruptedError_):
            return signals.interrupted_exit_code(exc.exit_code)
        return exc.exit_code
    except BrokenPipeError:
        # `llama-toolchain … | head`: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if is_disk_full(exc):  # the path and the cause (ENOSPC), what is free there; no traceback
            err: ToolchainError = disk_full_error(exc)
        elif exc.errno in _FILESYSTEM_ERRNOS:
            # a file or directory the run needs cannot be written or read (read-only project,
            # a file where a directory belongs): the OS's words and the path, never a traceback
            err = ConfigError(
                f"cannot use {exc.filename or 'a file'}: {exc.strerror or exc}",
                "make that path writable (or move what is in the way), or point the toolchain "
                "elsewhere ([tool.llama-toolchain] work-dir, cache-dir, lock; --work-dir)",
            )
        else:
            raise
        LOG.error(str(err), title=err.title)
        return err.exit_code
    except KeyboardInterrupt:
        # a second Ctrl-C while we report the first must not become a traceback
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        LOG.error(f"interrupted ({signals.received_name()})", title="interrupted")
        return signals.interrupted_exit_code(InterruptedError_.exit_code)


# OSErrors that mean "this path cannot be used here", not a bug of ours.
_FILESYSTEM_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENAMETOOLONG,
    errno.ELOOP,
}
