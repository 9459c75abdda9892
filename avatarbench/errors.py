"""Error types. Every user-facing failure is one line naming the file/field and what was expected.

The CLI catches :class:`AvatarbenchError` and prints ``error: <message>`` without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class AvatarbenchError(Exception):
    """Base class of all errors meant for the user (printed as one line by the CLI)."""


class DataError(AvatarbenchError):
    """Bad or missing input data.

    Args:
        path: the file (or folder) at fault.
        problem: what is wrong, e.g. ``"field 'expr' has shape (1, 50)"``.
        expected: what was expected, e.g. ``"(1, 100)"``.
    """

    def __init__(self, path: str | Path, problem: str, expected: str | None = None):
        self.path = str(path)
        self.problem = problem
        self.expected = expected
        msg = f"{self.path}: {problem}"
        if expected:
            msg += f" (expected {expected})"
        super().__init__(msg)


class ConfigError(AvatarbenchError):
    """Bad configuration: unknown method, unknown ``--set`` key, bad value."""


class ModelFileError(AvatarbenchError):
    """A licence-gated model file (FLAME, SMPL-X, LPIPS backbone) is missing or malformed."""


class RunExistsError(AvatarbenchError):
    """Refusing to overwrite an existing run folder."""


class WriteError(AvatarbenchError):
    """Writing results failed (disk full, read-only folder, permission, ...): one line, what and where."""

    @classmethod
    def from_oserror(cls, e: OSError, what: str, where: str | Path) -> "WriteError":
        import errno

        path = e.filename or where
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            why = "the disk is full" if e.errno != errno.EFBIG else "the file size limit was reached"
            return cls(f"{path}: {why} while writing {what}; earlier results and checkpoints are intact "
                       "-- free space and run the same command again to continue")
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return cls(f"{path}: cannot write {what} ({e.strerror or 'read-only'}); choose a writable --output")
        return cls(f"{path}: cannot write {what} ({e.strerror or type(e).__name__}); earlier results are intact")
