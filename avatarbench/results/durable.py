"""Durable, atomic file writes (no torch import: used by the CLI's light commands too).

``durable_write_bytes``: the bytes go to a temp file in the same folder (unique per process),
are fsynced, renamed over the final name with ``os.replace`` and the folder is fsynced. After a
crash or power loss the file holds either its old or its new content, never a mix; on an error
(disk full, read-only) the temp file is removed and the old content is untouched.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(d: Path) -> None:
    """fsync a directory so a rename inside it survives a crash (no-op where unsupported)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def durable_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably: temp file, fsync, ``os.replace``, fsync dir.

    On any error the temp file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
