"""Submission packages for the NeRSemble benchmark's ``mono_flame_avatar`` task.

The official package (toolkit ``nersemble_benchmark.data.submission_data``) is a zip of
``{pid:03d}/{sequence}/cam_{serial}.mp4``: for each of the 5 participants, each of the 4 test
sequences, each of the 4 scored cameras, every tracked frame, uint8 RGB 512 x 512, H.264 at crf 14
and 24.3 fps (``MonoFlameAvatarSubmissionDataWriter``).

- :func:`submission_videos` renders a trained method on the official ``self_reenact`` frames of
  one participant (its test sequences x the scored cameras), at the task resolution;
- :func:`write_submission` packs videos into a zip: with the toolkit's writer when the toolkit
  is installed, else with :func:`avatarbench.data.video.write_video` (same codec, crf, fps,
  stored zip members). It writes into a temporary file and renames it, and refuses to replace an
  existing zip unless ``overwrite=True``;
- :func:`expected_frame_counts` derives the expected length of every video from the tracking
  files (a test sequence has as many frames as its tracking);
- :func:`validate_frame_counts` checks a zip against them (missing files, frame counts,
  resolution, unexpected files), and :func:`toolkit_validate` runs the toolkit's
  ``validate_submission()`` with metadata built from the same counts (the official metadata is
  behind the access URL).
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from avatarbench.data.nersemble_benchmark import (
    MONO_FPS,
    MONO_IDS,
    MONO_RESOLUTION,
    MONO_SERIALS,
    MONO_TEST_SEQUENCES,
    tracking_path,
)
from avatarbench.errors import AvatarbenchError, ConfigError, DataError

TASK = "mono_flame_avatar"


class SubmissionExistsError(AvatarbenchError):
    """The output zip exists and overwriting was not asked for."""


def video_name(pid: int, seq: str, serial: str) -> str:
    return f"{int(pid):03d}/{seq}/cam_{serial}.mp4"


def toolkit_available() -> bool:
    try:
        import nersemble_benchmark.data.submission_data  # noqa: F401
    except Exception:  # missing toolkit or one of its dependencies
        return False
    return True


# --------------------------------------------------------------------------- rendering
def submission_frames(subject) -> dict[tuple[int, str, str], list]:
    """(pid, sequence, serial) -> the official test frames in frame order (from ``self_reenact``)."""
    if subject.meta.get("format") != "nersemble_benchmark" or subject.meta.get("protocol") != "nersemble_mono":
        raise ConfigError(f"subject {subject.name!r} is not a NeRSemble benchmark participant under the official "
                          "protocol nersemble_mono (a submission renders its hidden test sequences)")
    pid = int(subject.meta["participant"])
    groups: dict[tuple[int, str, str], list] = defaultdict(list)
    for f in subject.frames("self_reenact"):
        groups[(pid, f.sequence, f.camera.name)].append(f)
    for k in groups:
        groups[k].sort(key=lambda f: int(f.meta["frame_index"]))
    return dict(sorted(groups.items(), key=lambda kv: (MONO_TEST_SEQUENCES.index(kv[0][1]),
                                                        MONO_SERIALS.index(kv[0][2]))))


def submission_videos(method, subject, *, progress=None):
    """Yield ``(pid, sequence, serial, frames)`` with frames uint8 (T, 512, 512, 3), rendered by ``method``.

    Cameras are resized to the task resolution when the run used another one (``data.scale``).
    """
    import torch

    W, H = MONO_RESOLUTION
    for (pid, seq, serial), frames in submission_frames(subject).items():
        out = []
        for f in frames:
            cam = f.camera if (f.camera.width, f.camera.height) == (W, H) else f.camera.resized(W, H)
            with torch.no_grad():
                rgb = method.render(replace(f, camera=cam)).rgb.detach().float().clamp(0, 1).cpu().numpy()
            out.append((rgb * 255.0 + 0.5).astype(np.uint8))
            if progress:
                progress()
        yield pid, seq, serial, np.stack(out)


# --------------------------------------------------------------------------- writing
class _OwnWriter:
    """Equivalent of the toolkit's ``MonoFlameAvatarSubmissionDataWriter`` (no toolkit needed)."""

    def __init__(self, zip_path: str):
        self._zipf = zipfile.ZipFile(zip_path, "w")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._zipf.close()

    def add_video(self, participant_id: int, sequence_name: str, serial: str, frames) -> None:
        from avatarbench.data.video import write_video

        W, H = MONO_RESOLUTION
        f0 = frames[0]
        if f0.dtype != np.uint8 or f0.shape != (H, W, 3):
            raise ValueError(f"frames must be uint8 ({H}, {W}, 3), got {f0.dtype} {f0.shape}")
        if participant_id not in MONO_IDS or sequence_name not in MONO_TEST_SEQUENCES or serial not in MONO_SERIALS:
            raise ValueError(f"{video_name(participant_id, sequence_name, serial)} is not part of the benchmark")
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "video.mp4"
            write_video(p, list(frames), MONO_FPS, crf=14)
            self._zipf.write(p, video_name(participant_id, sequence_name, serial))


@contextmanager
def _writer(zip_path: str, use_toolkit: bool | None):
    if use_toolkit is None:
        use_toolkit = toolkit_available()
    if use_toolkit:
        import shutil

        import mediapy
        from nersemble_benchmark.data.submission_data import MonoFlameAvatarSubmissionDataWriter

        if shutil.which("ffmpeg") is None:  # mediapy needs an ffmpeg binary: use imageio-ffmpeg's
            import imageio_ffmpeg

            mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())

        w = MonoFlameAvatarSubmissionDataWriter(zip_path)
    else:
        w = _OwnWriter(zip_path)
    with w:
        yield w


def write_submission(zip_path: str | Path, videos, *, overwrite: bool = False, use_toolkit: bool | None = None,
                     echo=None) -> dict[str, int]:
    """Pack ``(pid, sequence, serial, frames uint8 (T, 512, 512, 3))`` items into the official zip.

    Args:
        zip_path: the output; an existing file is an error unless ``overwrite``.
        videos: iterable of the items above (e.g. from :func:`submission_videos`).
        use_toolkit: None = the toolkit's writer when installed.
    Returns:
        zip member name -> frames written.
    Raises:
        SubmissionExistsError: the zip exists and ``overwrite`` is False (nothing is touched).
    """
    zip_path = Path(zip_path)
    if zip_path.exists() and not overwrite:
        raise SubmissionExistsError(f"{zip_path}: exists; not overwriting it (pass --force or another --out)")
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{zip_path.name}.", suffix=".partial", dir=zip_path.parent)
    os.close(fd)
    written: dict[str, int] = {}
    try:
        with _writer(tmp, use_toolkit) as w:
            for pid, seq, serial, frames in videos:
                w.add_video(int(pid), seq, serial, [np.asarray(f) for f in frames])
                written[video_name(pid, seq, serial)] = len(frames)
                if echo:
                    echo(f"  {video_name(pid, seq, serial)}: {len(frames)} frames")
        if zip_path.exists() and not overwrite:  # appeared meanwhile
            raise SubmissionExistsError(f"{zip_path}: exists; not overwriting it (pass --force or another --out)")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, zip_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return written


# --------------------------------------------------------------------------- validation
def expected_frame_counts(participant_dirs) -> dict[str, int]:
    """Zip member -> expected frames, from the test sequences' tracking files (T of each file).

    Args:
        participant_dirs: ``<folder>/mono_flame_avatar/<pid>`` folders.
    """
    from avatarbench.data.flame_tracking import read_tracking

    out = {}
    for root in participant_dirs:
        root = Path(root)
        pid = int(root.name)
        for seq in MONO_TEST_SEQUENCES:
            T = read_tracking(tracking_path(root, seq))["expression"].shape[0]
            for serial in MONO_SERIALS:
                out[video_name(pid, seq, serial)] = T
    return out


def _video_props(data: bytes) -> tuple[int, int, int]:
    import av

    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        return n, int(s.codec_context.width), int(s.codec_context.height)


def validate_frame_counts(zip_path: str | Path, expected: dict[str, int]) -> dict[str, list]:
    """Check a submission zip against ``expected`` (member -> frames); ``{}`` means valid.

    Keys (only when non-empty): ``missing_files``, ``wrong_frame_counts`` [(name, actual, expected)],
    ``wrong_resolutions`` [(name, (w, h), (512, 512))], ``unexpected_files``, ``unreadable_files``.
    """
    issues: dict[str, list] = defaultdict(list)
    with zipfile.ZipFile(zip_path) as z:
        names = [i.filename for i in z.infolist() if not i.is_dir()]
        for name, n_exp in expected.items():
            if name not in names:
                issues["missing_files"].append(name)
                continue
            try:
                n, w, h = _video_props(z.read(name))
            except Exception as e:  # a broken member
                issues["unreadable_files"].append((name, type(e).__name__))
                continue
            if n != n_exp:
                issues["wrong_frame_counts"].append((name, n, n_exp))
            if (w, h) != MONO_RESOLUTION:
                issues["wrong_resolutions"].append((name, (w, h), MONO_RESOLUTION))
        issues["unexpected_files"] = [n for n in names if n not in expected]
    return {k: v for k, v in issues.items() if v}


_TOOLKIT_SCRIPT = r"""
import json, sys, types
job = json.load(sys.stdin)
if job["stub_open3d"]:
    sys.modules["open3d"] = types.ModuleType("open3d")
import nersemble_benchmark.data.submission_data as sd
from nersemble_benchmark.util.metadata import (MonoFLAMEAvatarMetadata, MonoFLAMEAvatarParticipantMetadata,
                                               MonoFLAMEAvatarSequenceMetadata)
meta = MonoFLAMEAvatarMetadata({int(p): MonoFLAMEAvatarParticipantMetadata(
    {s: MonoFLAMEAvatarSequenceMetadata(int(n)) for s, n in seqs.items()}) for p, seqs in job["counts"].items()})
sd.MonoFLAMEAvatarMetadata.load = staticmethod(lambda: meta)
improps = sd.iio.improps
sd.iio.improps = lambda f, **kw: improps(f, **{"plugin": "pyav", **kw})
import gc
gc.collect = lambda *a, **k: 0  # imageio's pyav plugin collects twice per video; slow, and moot in this short process
reader = sd.MonoFlameAvatarSubmissionDataReader(job["zip"])
json.dump(reader.validate_submission(), sys.stdout)
"""


def toolkit_validate(zip_path: str | Path, expected: dict[str, int]) -> dict:
    """The toolkit's ``MonoFlameAvatarSubmissionDataReader.validate_submission()`` with local metadata.

    The official metadata (``MonoFLAMEAvatarMetadata.load()``) is fetched from the access-gated
    URL; here it is built from ``expected`` (the metadata holds one count per participant and
    sequence; sequences of participants not in ``expected`` get 0 frames, so their videos are
    reported missing). Its ``iio.improps`` call is given ``plugin="pyav"`` (the default plugin
    search fails on a zip member). It runs in a fresh interpreter, so the patches stay there; that
    interpreter also skips the ``gc.collect()`` imageio's pyav plugin calls twice per video
    (about 0.4 s each with the toolkit's imports loaded; it changes no result).

    Raises:
        ImportError: the toolkit is not installed; RuntimeError: it failed (its last error line).
    """
    import json
    import subprocess
    import sys

    if not toolkit_available():
        raise ImportError("nersemble-benchmark is not importable")
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for name, n in expected.items():
        pid, seq, _ = name.split("/")
        counts[int(pid)][seq] = n
    counts_all = {str(p): {s: counts.get(p, {}).get(s, 0) for s in MONO_TEST_SEQUENCES} for p in MONO_IDS}
    o3d = sys.modules.get("open3d")
    job = {"zip": str(Path(zip_path).resolve()), "counts": counts_all,
           "stub_open3d": o3d is not None and getattr(o3d, "__file__", None) is None}
    res = subprocess.run([sys.executable, "-c", _TOOLKIT_SCRIPT], input=json.dumps(job), capture_output=True,
                         text=True)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"nersemble-benchmark validate_submission() failed: {last}")
    raw = json.loads(res.stdout)
    return {k: [tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v for v in vals]
            for k, vals in raw.items()}


# --------------------------------------------------------------------------- from a run folder
def load_trained_method(run_dir: Path):
    """(method, subject, cfg) of a finished run folder (the newest checkpoint)."""
    from omegaconf import OmegaConf

    from avatarbench.engine.checkpoint import latest_checkpoint, load_checkpoint
    from avatarbench.engine.registry import load_method_class
    from avatarbench.engine.run import load_run_subject, train_frames_for
    from avatarbench.engine.trainer import select_device

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise DataError(run_dir / "config.yaml", "not found", "a run folder written by `avatarbench run`")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    ck = latest_checkpoint(run_dir)
    if ck is None:
        raise DataError(run_dir, "has no checkpoint", "a trained run (`avatarbench run ...` first)")
    subject = load_run_subject(cfg)
    device = select_device(cfg.engine.device)
    from avatarbench.render import set_default_backend

    set_default_backend(str(cfg.render.backend))
    method = load_method_class(cfg.run.method)(cfg.method, subject, device)
    method.setup(train_frames_for(subject, cfg))
    payload = load_checkpoint(ck)
    method.load_state_dict(payload["method"])
    if int(payload["step"]) < method.total_iterations():
        raise DataError(ck, f"training stopped at step {payload['step']} of {method.total_iterations()}",
                        "a finished run (resume it with `avatarbench run` first)")
    return method, subject, cfg


def run_submit(run_dirs, out: Path, *, overwrite: bool = False, use_toolkit: bool | None = None, echo=None) -> dict:
    """``avatarbench submit``: render the runs' test sequences, write and validate the zip.

    Args:
        run_dirs: finished run folders on official-protocol participants (one per participant).
        out: the zip; an existing one is refused unless ``overwrite`` (checked before rendering).
        use_toolkit: writer and validator of ``nersemble-benchmark`` (None = when installed).
    Returns:
        a JSON-ready report: ``zip``, ``videos``, ``participants``, ``missing_participants``,
        ``issues`` (frame counts from the tracking files; ``{}`` = valid), ``toolkit_issues`` (the
        toolkit's ``validate_submission()`` with local metadata, or a string saying why not run).
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise SubmissionExistsError(f"{out}: exists; not overwriting it (pass --force or another --out)")
    loaded = []
    for rd in run_dirs:
        method, subject, _ = load_trained_method(Path(rd))
        submission_frames(subject)  # checks format and protocol before any rendering
        loaded.append((method, subject))
    pids = [int(s.meta["participant"]) for _, s in loaded]
    if len(set(pids)) != len(pids):
        raise ConfigError(f"two runs of the same participant: {sorted(pids)}")
    toolkit = toolkit_available() if use_toolkit is None else bool(use_toolkit)
    if use_toolkit and not toolkit_available():
        raise ConfigError("--toolkit: nersemble-benchmark is not importable (pip install nersemble-benchmark)")

    def videos():
        for method, subject in loaded:
            if echo:
                echo(f"rendering participant {subject.meta['participant']} ({subject.root})")
            yield from submission_videos(method, subject)

    written = write_submission(out, videos(), overwrite=overwrite, use_toolkit=toolkit, echo=echo)
    expected = expected_frame_counts([s.root for _, s in loaded])
    report = {"zip": str(out), "writer": "nersemble_benchmark" if toolkit else "avatarbench",
              "videos": len(written), "frames": int(sum(written.values())), "participants": sorted(pids),
              "missing_participants": [p for p in MONO_IDS if p not in pids],
              "issues": validate_frame_counts(out, expected)}
    if toolkit:
        report["toolkit_issues"] = toolkit_validate(out, expected)
    else:
        report["toolkit_issues"] = "not run (nersemble-benchmark is not installed)"
    return report
