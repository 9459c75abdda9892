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
