"""How the command line shows warnings: each once, in one short line.

Library code warns through :mod:`logging` or :mod:`warnings`; the CLI routes both here, so a
user sees ``warning: <first sentence>`` once per distinct message, on stderr. The full text (how
to obtain a missing file, ...) is shown with ``AVATARBENCH_VERBOSE=1``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

MAX_CHARS = 200
_SEEN: set[str] = set()


def shorten(message: str, limit: int = MAX_CHARS) -> str:
    """The first sentence (or line) of ``message``, at most ``limit`` characters.

    A sentence ends at ". " (paths and URLs keep their dots)."""
    text = " ".join(str(message).split())
    first = text.split(". ", 1)[0].rstrip(".")
    if len(first) > limit:
        first = first[: limit - 3].rstrip() + "..."
    return first


def _verbose() -> bool:
    return os.environ.get("AVATARBENCH_VERBOSE", "") not in ("", "0", "false", "no")


def emit(message: str, stream=None) -> None:
    """Print ``warning: <message>`` once per distinct (shortened) message."""
    text = str(message) if _verbose() else shorten(message)
    if text in _SEEN:
        return
    _SEEN.add(text)
    print(f"warning: {text}", file=stream or sys.stderr, flush=True)


class _OnceHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102
        try:
            emit(record.getMessage())
        except Exception:  # pragma: no cover - a warning must never break a run
            self.handleError(record)


def setup_warnings() -> None:
    """Route logging warnings and :func:`warnings.warn` through :func:`emit` (idempotent)."""
    root = logging.getLogger()
    if not any(isinstance(h, _OnceHandler) for h in root.handlers):
        handler = _OnceHandler(level=logging.WARNING)
        root.addHandler(handler)
        if root.level == logging.NOTSET or root.level > logging.WARNING:
            root.setLevel(logging.WARNING)

    def showwarning(message, category, filename, lineno, file=None, line=None):
        emit(message, file)

    warnings.showwarning = showwarning
