"""The harness's one error policy: every expected failure is an `AdbenchError` whose message is one line naming the
culprit (file, column, row, key, value) and what was expected; its class fixes the process exit code.

The CLI (`adbench_dbt.cli.main`) prints `error: <message>` and exits with `exit_code`; only `--debug` shows a
traceback. Anything that is not an `AdbenchError` (or an OS error on a path) is a bug and exits with
`EXIT_INTERNAL`. The codes are documented in the README ("What happens when something goes wrong").
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1       # finished, but some inputs failed and were reported (prepare: volumes that failed to decode)
EXIT_USAGE = 2         # bad command line, configuration, profile or --set override
EXIT_DATA = 3          # the dataset on disk is not what BCS-DBT looks like (tables, volumes, cache, split)
EXIT_CHECKPOINT = 4    # a checkpoint that cannot be read, is refused (unsafe pickle) or does not fit the config
EXIT_DEVICE = 5        # the requested device is not available
EXIT_FILESYSTEM = 6    # an OS error on a path the user gave (permission, disk full, read-only, missing)
EXIT_RUN = 7           # a run cannot proceed as asked (conflicting earlier results, nothing to score)
EXIT_INTERNAL = 70     # a bug in the harness or a method: reported with a hint to rerun with --debug
EXIT_INTERRUPTED = 130


class AdbenchError(Exception):
    """Base of every expected failure; `str(err)` is the one-line message shown to the user."""

    exit_code: int = EXIT_RUN


class ConfigError(AdbenchError, ValueError):
    """A profile or override that does not validate; the message names the method and the key."""

    exit_code = EXIT_USAGE


class DataError(AdbenchError, ValueError):
    """The dataset on disk is not what BCS-DBT looks like; the message names the file and the problem."""

    exit_code = EXIT_DATA


class CheckpointError(AdbenchError, ValueError):
    """A checkpoint that cannot be used: unreadable, refused by `weights_only`, or of the wrong shapes."""

    exit_code = EXIT_CHECKPOINT


class DeviceError(AdbenchError, RuntimeError):
    """The requested device does not exist on this machine."""

    exit_code = EXIT_DEVICE


class FileSystemError(AdbenchError, OSError):
    """An OS error on a named path (permission denied, disk full, read-only file system)."""

    exit_code = EXIT_FILESYSTEM


class RunError(AdbenchError, RuntimeError):
    """A run that cannot proceed as asked; the message names the method, the split or the run directory."""

    exit_code = EXIT_RUN


def describe_os_error(err: OSError, path: object | None = None) -> str:
    """'PATH: Permission denied' with the path the error is about (or `path` when the OS did not say)."""
    where = err.filename if err.filename is not None else path
    reason = err.strerror or str(err) or type(err).__name__
    return f"{where}: {reason}" if where is not None else reason
