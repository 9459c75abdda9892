"""Progress of a first-use dataset generation: one bar over cameras x frames.

The generators write each image as soon as it is rendered (in worker processes or in-process),
so the bar counts the image files in the temporary output folder from a polling thread and needs
no hook inside the generators. The bar is drawn on a terminal only (``tqdm(disable=None)``); the
note saying what is generated, where, and that it happens once is always printed.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path


def count_files(folder: Path, pattern: str) -> int:
    """Number of files below ``folder`` matching the glob ``pattern`` (0 while it does not exist)."""
    try:
        return sum(1 for _ in Path(folder).glob(pattern))
    except OSError:  # a folder renamed or removed while walking
        return 0


@contextmanager
def generation_progress(folder: Path, pattern: str, total: int, what: str, destination: Path,
                        interval: float = 1.0, stream=None):
    """Show a bar counting ``pattern`` files under ``folder`` up to ``total`` while the block runs.

    Args:
        folder: the temporary folder the generator writes into.
        pattern: glob of one image per (camera, frame), e.g. ``*/images/*.png``.
        total: cameras x frames.
        what: e.g. ``synthetic head subjects (16 cameras x 139 timesteps)``.
        destination: the final folder (said in the note).
        interval: seconds between counts.
    """
    from tqdm.auto import tqdm

    stream = stream or sys.stderr
    print(f"first use: generating the {what} into {destination} (once; later runs reuse it)", file=stream,
          flush=True)
    t0 = time.time()
    bar = tqdm(total=total, desc="generating", unit="img", disable=None, file=stream, dynamic_ncols=True)
    stop = threading.Event()

    def poll():
        while not stop.wait(interval):
            n = min(count_files(folder, pattern), total)
            if n > bar.n:
                bar.update(n - bar.n)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    ok = False
    try:
        yield bar
        ok = True
    finally:
        stop.set()
        thread.join()
        bar.close()
        if ok:
            n = count_files(folder, pattern)
            print(f"generated {n} of {total} images in {time.time() - t0:.0f} s", file=stream, flush=True)
