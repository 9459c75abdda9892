"""Checking every file of a subject once: ``avatarbench data inspect --check`` and the pre-training check.

:func:`check_subject` opens every image, mask and driving-parameter file of every split once
and returns *all* problems (missing, unreadable, wrong size, bad parameters), one line each.
:func:`check_frame_sizes` is the cheap version ``avatarbench run`` does before it creates the
run folder: it reads only the image headers of the frames it will use, so an image or mask of
the wrong size stops the run before training instead of in the middle of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from avatarbench.errors import AvatarbenchError, DataError


VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi")


def header_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file header (PIL reads no pixel data; for a video, e.g. the
    NeRSemble benchmark's per-camera MP4s, the first video stream's size from the container)."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise DataError(path, "file not found", "an image file")
    if Path(path).suffix.lower() in VIDEO_SUFFIXES:
        try:
            import av

            with av.open(str(path)) as c:
                st = c.streams.video[0]
                return int(st.codec_context.width), int(st.codec_context.height)
        except Exception as e:  # noqa: BLE001 - any container/codec error is one line
            raise DataError(path, f"unreadable video ({type(e).__name__})", "an MP4 with a video stream") from None
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(path, f"unreadable image ({type(e).__name__})", "a PNG/JPEG file") from None


def _expected(frame) -> tuple[int, int] | None:
    ns = frame.camera.meta.get("native_size")
    return (int(ns[0]), int(ns[1])) if ns is not None else None


def _size_problem(path: Path, got: tuple[int, int], want: tuple[int, int] | None, what: str) -> str | None:
    if want is None or got == want:
        return None
    return (f"{path}: {what} is {got[0]}x{got[1]} pixels (expected {want[0]}x{want[1]} as given by the "
            f"dataset's camera (w, h))")


def check_frame_sizes(frames: Iterable, *, limit: int = 1) -> None:
    """Raise one :class:`DataError` line if an image or mask of ``frames`` is missing, unreadable or of
    the wrong size (header reads only). The message counts the further problems found."""
    problems: list[str] = []
    seen: set[Path] = set()
    for f in frames:
        want = _expected(f)
        for path, what in ((f.image_path, "image"), (f.mask_path, "foreground mask")):
            if path is None or path in seen:
                continue
            seen.add(path)
            try:
                p = _size_problem(path, header_size(path), want, what)
            except DataError as e:
                p = str(e)
            if p:
                problems.append(p)
    if problems:
        more = f" (and {len(problems) - 1} more problems: run `avatarbench data inspect --check`)" \
            if len(problems) > 1 else ""
        raise DataError(problems[0].split(": ", 1)[0], problems[0].split(": ", 1)[1] + more)


def check_subject(subject) -> dict:
    """Open every image, mask and driving-parameter file of ``subject`` once; collect every problem.

    Returns:
        ``{"files_checked": int, "problems": [one line per problem]}``.
    """
    from avatarbench.data.images import read_image_array

    problems: list[str] = []
    checked = 0
    seen_files: set[Path] = set()
    seen_params: set[int] = set()
    for split in subject.split_names:
        for f in subject.frames(split):
            want = _expected(f)
            for path, what in ((f.image_path, "image"), (f.mask_path, "foreground mask")):
                if path is None or path in seen_files:
                    continue
                seen_files.add(path)
                checked += 1
                try:
                    arr = read_image_array(path)  # decodes the whole file: catches truncated data too
                    p = _size_problem(path, (arr.shape[1], arr.shape[0]), want, what)
                    if p:
                        problems.append(p)
                except AvatarbenchError as e:
                    problems.append(str(e))
            drv = f.driving
            if id(drv) in seen_params:
                continue
            seen_params.add(id(drv))
            checked += 1
            try:
                for k in list(drv.keys()):
                    drv[k]
            except AvatarbenchError as e:
                problems.append(str(e))
            except (KeyError, ValueError, OSError) as e:
                problems.append(f"{getattr(drv, 'source', f.key)}: unreadable driving parameters "
                                f"({type(e).__name__}: {e})")
    return {"files_checked": checked, "problems": problems}
