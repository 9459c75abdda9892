"""Keeping dataset paths inside the dataset.

A dataset's JSON names its files with relative paths. :func:`dataset_file` accepts a path only
when, taken lexically (``..`` collapsed, no filesystem access), it stays inside the dataset
folder -- or, for a VHAP union folder, inside one of the *sibling* folders of the union
(``../<sibling sequence>/...``, how VHAP unions point into their sequences), and nothing above.
Absolute paths, ``../../...``, ``../seq/../../etc/passwd`` and the like are refused with a
:class:`~avatarbench.errors.DataError` naming the JSON file, the frame and the key.

Symbolic links inside the dataset are followed (the dataset's owner chose them); the guarantee
is about the names written in the dataset's files.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from avatarbench.errors import DataError


def dataset_file(root: Path, rel: str, *, source: Path, where: str, siblings: bool = True) -> str:
    """Check ``rel`` (relative to ``root``) and return it normalised (forward slashes, no ``..`` inside).

    Args:
        root: the dataset folder the path is relative to.
        rel: the path as written in the dataset file.
        source: the file that holds ``rel`` (for the message).
        where: e.g. ``"frame 12: key 'file_path'"``.
        siblings: allow ``../<sibling of root>/...`` (VHAP unions).

    Raises:
        DataError: the path is absolute or leaves the dataset folder (and its sibling folders).
    """
    text = str(rel).replace("\\", "/")
    expected = ("a path inside the dataset folder" +
                (f" or in a sibling folder of {Path(root).name!r} (../<sequence folder>/...)" if siblings else ""))
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise DataError(source, f"{where} is the absolute path {rel!r}", expected)
    norm = posixpath.normpath(text)
    parts = norm.split("/")
    if parts[0] != "..":
        return norm
    ok = siblings and len(parts) >= 3 and parts[1] not in ("..", ".", "")
    if not ok:
        raise DataError(source, f"{where} is {rel!r}, which resolves outside the dataset folder", expected)
    return norm


def safe_component(name: str, *, source: Path, what: str) -> str:
    """A single folder/file name taken from a dataset file (e.g. a camera name): no separators, no ``..``."""
    s = str(name)
    if not s or s in (".", "..") or "/" in s or "\\" in s or "\0" in s:
        raise DataError(source, f"{what} {name!r} is not a plain folder name", "a name without '/', '\\' or '..'")
    return s
