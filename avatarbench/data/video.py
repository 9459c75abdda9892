"""MP4 video frames as dataset images: lazy decoding with a shared chunk cache, and an H.264 writer.

Datasets that ship videos instead of image files (the NeRSemble benchmark) read single frames
through :func:`read_video_frame`. Decoding is sequential and exact (the frame index is the number
of frames decoded before it, never a timestamp computation):

- frames are decoded and cached in chunks of :data:`CHUNK` consecutive frames;
- one open decoder per video keeps its position, so reading a video front to back decodes each
  frame once; a request behind the decoder's position re-opens the file and decodes from the
  start (there is no keyframe seeking, which keeps indices exact for any GOP structure);
- the cache is shared by all videos and holds at most ``$AVATARBENCH_VIDEO_CACHE_MB`` MiB of
  uint8 frames (default 2048), least recently used chunks are dropped first.

The engine keeps its own cache of training images (``data.cache_images_gb``), so in a training run
each frame is decoded about once.

:func:`write_video` encodes uint8 RGB frames with libx264 at a given CRF and frame rate into
``yuv420p`` MP4, the settings ``mediapy.write_video(path, frames, crf=14, fps=...)`` uses (the
NeRSemble benchmark writers), via PyAV (no ffmpeg binary needed).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

import numpy as np

from avatarbench.errors import DataError

CHUNK = 32
_DEFAULT_CACHE_MB = 2048


def _cache_budget() -> int:
    try:
        return int(float(os.environ.get("AVATARBENCH_VIDEO_CACHE_MB", _DEFAULT_CACHE_MB)) * 2 ** 20)
    except ValueError:
        return _DEFAULT_CACHE_MB * 2 ** 20


def _open(path: Path):
    import av

    if not path.is_file():
        raise DataError(path, "video file not found", "an MP4 file (is the download complete?)")
    try:
        container = av.open(str(path))
    except Exception as e:  # PyAV raises many error types for truncated / non-video files
        raise DataError(path, f"unreadable video ({type(e).__name__})", "an MP4 file") from None
    if not container.streams.video:
        container.close()
        raise DataError(path, "holds no video stream", "an MP4 file with one video stream")
    return container


class _Decoder:
    """A forward-only decoder of one video, counting frames from 0."""

    def __init__(self, path: Path):
        self.path = path
        self.container = _open(path)
        self.frames = self.container.decode(video=0)
        self.next_index = 0

    def read(self, fmt: str) -> np.ndarray | None:
        try:
            f = next(self.frames)
        except StopIteration:
            return None
        except Exception as e:
            raise DataError(self.path, f"video decoding failed at frame {self.next_index} ({type(e).__name__})",
                            "an intact MP4 file") from None
        self.next_index += 1
        return f.to_ndarray(format=fmt)

    def close(self) -> None:
        self.container.close()


class _VideoCache:
    def __init__(self):
        self.lock = threading.Lock()
        self.chunks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.nbytes = 0
        self.decoders: dict[tuple, _Decoder] = {}
        self.decoded = 0  # frames decoded in total (for tests and benchmarks)

    def _key(self, path: Path, fmt: str) -> tuple:
        st = path.stat()
        return (str(path.resolve()), st.st_mtime_ns, st.st_size, fmt)

    def chunk(self, path: Path, index: int, fmt: str) -> np.ndarray:
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "video file not found", "an MP4 file (is the download complete?)")
        vkey = self._key(path, fmt)
        c = index // CHUNK
        ckey = vkey + (c,)
        with self.lock:
            arr = self.chunks.get(ckey)
            if arr is not None:
                self.chunks.move_to_end(ckey)
                return arr
            dec = self.decoders.get(vkey)
            if dec is None or dec.next_index > c * CHUNK:
                if dec is not None:
                    dec.close()
                dec = self.decoders[vkey] = _Decoder(path)
            frames = []
            while dec.next_index < (c + 1) * CHUNK:
                i = dec.next_index
                img = dec.read(fmt)
                if img is None:
                    break
                self.decoded += 1
                if i >= c * CHUNK:
                    frames.append(img)
            if not frames:
                raise DataError(path, f"has no frame {index} (it ends after {dec.next_index} frames)",
                                "one frame per tracked timestep")
            arr = np.stack(frames)
            self.chunks[ckey] = arr
            self.nbytes += arr.nbytes
            budget = _cache_budget()
            while self.nbytes > budget and len(self.chunks) > 1:
                _, old = self.chunks.popitem(last=False)
                self.nbytes -= old.nbytes
            if len(self.decoders) > 64:  # bound open files
                for k in list(self.decoders)[:-32]:
                    self.decoders.pop(k).close()
            return arr

    def clear(self) -> None:
        with self.lock:
            for d in self.decoders.values():
                d.close()
            self.decoders.clear()
            self.chunks.clear()
            self.nbytes = 0


CACHE = _VideoCache()


def read_video_frame(path: str | Path, index: int, *, gray: bool = False) -> np.ndarray:
    """Frame ``index`` (0-based) of a video.

    Returns:
        uint8 (H, W, 3) RGB, or (H, W, 1) with ``gray=True`` (the luma plane; for alpha-map videos).
    Raises:
        DataError: missing/unreadable file, or the video has fewer than ``index + 1`` frames.
    """
    if index < 0:
        raise IndexError(f"negative frame index {index}")
    chunk = CACHE.chunk(Path(path), int(index), "gray" if gray else "rgb24")
    j = int(index) % CHUNK
    if j >= len(chunk):
        raise DataError(path, f"has no frame {index} (it ends after {index - j + len(chunk)} frames)",
                        "one frame per tracked timestep")
    img = chunk[j]
    return img[..., None] if gray else img


def video_info(path: str | Path) -> tuple[int, int, int]:
    """``(num_frames, width, height)`` of a video, counting packets (no decoding).

    Raises:
        DataError: missing or unreadable file.
    """
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        w, h = int(stream.codec_context.width), int(stream.codec_context.height)
        n = 0
        for packet in container.demux(stream):
            if packet.size:
                n += 1
    except DataError:
        raise
    except Exception as e:
        raise DataError(path, f"unreadable video ({type(e).__name__})", "an MP4 file") from None
    finally:
        container.close()
    return n, w, h


def write_video(path: str | Path, frames, fps: float, crf: int = 14) -> None:
    """Encode uint8 (H, W, 3) RGB frames as H.264 (libx264, yuv420p, ``crf``) MP4 at ``fps``.

    Height and width must be even (yuv420p). Writes to ``path`` directly (callers write into a
    temporary folder when atomicity matters).
    """
    import av

    frames = list(frames)
    if not frames:
        raise ValueError("write_video: no frames")
    h, w = frames[0].shape[:2]
    for i, f in enumerate(frames):
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape != (h, w, 3):
            raise ValueError(f"write_video: frame {i} is {f.dtype} {f.shape} (expected uint8 ({h}, {w}, 3))")
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(int(crf))}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
