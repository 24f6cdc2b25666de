"""One exception class per failure class, each with its own exit code.

Every error the toolchain raises on purpose is a :class:`ToolchainError`. The CLI prints its
message and ``hint`` (what to do next) and exits with ``exit_code``. Codes are grouped by stage so
that a CI script can branch on them; the README's "When things go wrong" table mirrors this file.
"""

from __future__ import annotations


class ToolchainError(Exception):
    """Base class. ``hint`` tells the user the next step."""

    exit_code = 1
    title = "error"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  -> {self.hint}" if self.hint else self.message


# --- input and configuration (2-9) -------------------------------------------------------------
class UsageError(ToolchainError):
    """Command-line arguments that do not fit together."""

    exit_code = 2
    title = "usage"


class ConfigError(ToolchainError):
    """pyproject.toml [tool.llama-toolchain] or llama.lock is malformed or inconsistent."""

    exit_code = 3
    title = "bad configuration"


class UnsafeInputError(ToolchainError):
    """A ref, URL, requirement or name that could inject options or escape the work dir."""

    exit_code = 4
    title = "unsafe input refused"


class WorkDirBusyError(ToolchainError):
    """Another toolchain process holds the work dir lock."""

    exit_code = 5
    title = "work dir busy"


class ReportError(ToolchainError):
    """A report another stage wrote (``reports/*.json``) cannot be read back: not JSON, another
    kind of report, written by a newer toolchain, or a field missing or of the wrong type."""

    exit_code = 6
    title = "unreadable report"


# --- source stage (10-19) ------------------------------------------------------------------------
class RemoteUnreachableError(ToolchainError):
    """The remote could not be reached, or stalled past the network timeout."""

    exit_code = 10
    title = "remote unreachable"


class RefNotFoundError(ToolchainError):
    """No branch, tag or commit of that name on the remote (or in the mirror)."""

    exit_code = 11
    title = "ref not found"


class AmbiguousRefError(ToolchainError):
    """An abbreviated commit id matches several commits."""

    exit_code = 12
    title = "ambiguous ref"


class OfflineMissingError(ToolchainError):
    """--offline and the wanted commit or sdist is not in the cache."""

    exit_code = 13
    title = "not available offline"


class DirtyWorkTreeError(ToolchainError):
    """The checked-out tree has local changes; it is never reset without --force."""

    exit_code = 14
    title = "work tree has local changes"


class MirrorCorruptError(ToolchainError):
    """The cached mirror is damaged and refetching did not repair it."""

    exit_code = 15
    title = "mirror corrupt"


class SdistError(ToolchainError):
    """PyPI sdist could not be found, downloaded, verified or unpacked."""

    exit_code = 16
    title = "sdist problem"


# --- build stage (20-29) -------------------------------------------------------------------------
class MissingToolError(ToolchainError):
    """Compiler, CMake or Ninja missing or too old."""

    exit_code = 20
    title = "missing tool"


class ConfigureError(ToolchainError):
    """CMake configure failed (the message shows its errors and the log path)."""

    exit_code = 21
    title = "configure failed"


class BuildError(ToolchainError):
    """The build failed (the message shows the failing compiler lines and the log path)."""

    exit_code = 22
    title = "build failed"


class DiskFullError(ToolchainError):
    """The disk filled up (ENOSPC) while configuring, building or writing any output (a report, a
    log, the probe model, the dry run's records): the message names the file and the cause."""

    exit_code = 23
    title = "disk full"


class UnknownOptionError(ToolchainError):
    """A -D option the checked-out tree does not use (a typo would silently drop a backend)."""

    exit_code = 24
    title = "option unknown to this tree"


class ProfileError(ToolchainError):
    """Backend profile unknown or not buildable on this platform."""

    exit_code = 25
    title = "backend profile"


# --- verify stage (30-39) ------------------------------------------------------------------------
class VerifyError(ToolchainError):
    """The build does not carry what its profile promises."""

    exit_code = 30
    title = "verification failed"


class NothingVerifiedError(ToolchainError):
    """No check could establish that the build carries its backend (every one was unverifiable:
    stripped binaries, no device, binaries for another platform). Not a pass, and not a bad build."""

    exit_code = 31
    title = "nothing could be verified"


class UnreadableBinaryError(VerifyError):
    """A binary given to verify (or doctor --build, dryrun shipped) is truncated or malformed: a
    header field points outside the file. Not a verdict about the backend: the file is damaged."""

    exit_code = 32
    title = "not a readable binary"


# --- models / convert (40-49) -------------------------------------------------------------------
class ModelError(ToolchainError):
    """An architecture spec or config.json that cannot become a tiny model (unknown, malformed, corrupt)."""

    exit_code = 40
    title = "model spec"


class ConvertError(ToolchainError):
    """The converter environment could not be made, or no conversion could run at all."""

    exit_code = 41
    title = "conversion"


class GGUFError(ToolchainError):
    """A GGUF file that is not GGUF, too old (v1), truncated or inconsistent."""

    exit_code = 42
    title = "bad GGUF"


# --- coverage (50-59) ---------------------------------------------------------------------------
class CoverageFindingsError(ToolchainError):
    """The coverage matrix found cells that crash, hang, compute wrong numbers or regressed
    against the baseline (every cell and its evidence is in the report)."""

    exit_code = 50
    title = "coverage findings"


# --- doctor (60-69) ------------------------------------------------------------------------------
class DoctorFindingsError(ToolchainError):
    """doctor found a problem (the findings are in the report)."""

    exit_code = 60
    title = "problem found"


class NoLogLinesError(ToolchainError):
    """doctor was given a log in which no line is llama.cpp's (empty, another program's output,
    binary data): nothing was diagnosed, which is not "no problem found"."""

    exit_code = 61
    title = "no llama.cpp log lines found"


# --- oracle (70-79) ------------------------------------------------------------------------------
class OracleUnavailableError(ToolchainError):
    """The Metal oracle cannot be made for this tree: supports_op could not be cut out faithfully,
    or the probe does not compile against the tree (the exact reason is named)."""

    exit_code = 70
    title = "oracle unavailable"


class OracleValidationError(ToolchainError):
    """The oracle disagrees with the tree's real-device op table in a way nothing explains, or
    its best profile agrees less than required (every disagreement is in the report)."""

    exit_code = 71
    title = "oracle validation failed"


class DryRunUnavailableError(ToolchainError):
    """The Metal dry run cannot be made for this tree: its Objective-C interface no longer matches
    our stand-in (the functions are named), supports_op cannot be cut, or it does not compile."""

    exit_code = 72
    title = "dry run unavailable"


class DryRunFindingsError(ToolchainError):
    """``dryrun validate``: a finding on a built-in case that supports_op accepts which nothing
    explains (neither a kernel the tree instantiates nowhere nor a known stand-in limit)."""

    exit_code = 73
    title = "dry run validation failed"


class NothingToPredictError(ToolchainError):
    """``oracle predict`` / ``dryrun run`` on an ops file with no op in it: nothing was predicted,
    which is not a pass."""

    exit_code = 74
    title = "nothing to predict"


class InterruptedError_(ToolchainError):
    """Ctrl-C: partial results are written and marked incomplete."""

    exit_code = 130
    title = "interrupted"


def all_error_classes() -> list[type[ToolchainError]]:
    """Every concrete error class, for documentation and the exit-code uniqueness test."""
    seen: list[type[ToolchainError]] = []
    stack: list[type[ToolchainError]] = [ToolchainError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return sorted(seen, key=lambda c: c.exit_code)
