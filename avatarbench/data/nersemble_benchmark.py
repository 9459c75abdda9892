"""Loader for the NeRSemble 3D Head Avatar Benchmark download (toolkit ``nersemble-benchmark``).

Layout (``nersemble_benchmark.constants.ASSETS``), per participant ``<folder>/<task>/<pid:03d>/``::

    calibration/camera_params.json           {"world_2_cam": {serial: 4x4 OpenCV}, "intrinsics": {serial: 3x3}}
    sequences/<seq>/images/cam_<serial>.mp4      RGB, background removed
    sequences/<seq>/alpha_maps/cam_<serial>.mp4  alpha (first channel)
    sequences/<seq>/tracking/flame2023_tracking_v2.npz   (mono_flame_avatar only)

``load_nersemble_benchmark(<folder>/mono_flame_avatar/393)`` gives a :class:`Subject` whose
splits follow one of two protocols (``protocol=``):

``nersemble_mono`` (the official split)
    ``train``: the 18 training sequences seen by camera 222200037; ``self_reenact``: the 4 hidden
    test sequences x the 4 scored cameras (222200037, 222200046, 220700191, 222200039), driving
    only (no images: the ground truth is on the server); ``novel_view``: empty.
``nersemble_mono_local`` (for ablations; the hidden test set must not be used for them)
    one *training* sequence (``local_holdout``, default ``SEN-08-clothes_and_lodging``) is held
    out: ``train`` = the other 17 sequences from camera 222200037, ``self_reenact`` = the held-out
    sequence from camera 222200037 (with ground truth) plus any hold-out camera whose video is in
    the folder; ``novel_view`` = the hold-out cameras on the training sequences when their videos
    are present. The official download has only camera 222200037 for training sequences, so
    ``novel_view`` is empty there (see ``datasets/nersemble_benchmark.md``).

Cameras: ``Camera.id`` is the serial's index in the toolkit's ``SERIALS`` (222200037 -> 8, as
VHAP's camera 8), ``Camera.name`` the serial. Intrinsics are taken at the videos' resolution (512^2
for the mono task). Each tracking file's ``scale`` is moved into the world unit of its sequence
(:mod:`avatarbench.data.flame_tracking`): a frame's camera has its world-to-camera translation
divided by that sequence's scale; ``Subject.cameras`` use the first training sequence's scale.

Images come from the MP4s one frame at a time (:mod:`avatarbench.data.video`), without
compositing (the subject's ``background`` is the colour found where alpha = 0 in the first
training frame). Masks are the alpha videos' first channel / 255.

The ``nvs`` task has no FLAME tracking; the suite's head methods are FLAME-driven, so loading an
``nvs`` folder raises a DataError that says so (track it with VHAP first).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avatarbench.data.camera import Camera
from avatarbench.data.flame_tracking import TRACKING_FILE, read_tracking, root_joint_linear, tracking_to_driving
from avatarbench.data.images import resize_hwc
from avatarbench.data.subject import Frame, Subject
from avatarbench.errors import ConfigError, DataError

# ---- toolkit constants (nersemble_benchmark 0.2.0, constants.py) -------------------------------
SERIALS = ("222200042", "222200044", "222200046", "222200040", "222200036", "222200048", "220700191", "222200041",
           "222200037", "222200038", "222200047", "222200043", "222200049", "222200039", "222200045", "221501007")
NVS_IDS_AND_SEQUENCES = ((388, "GLASSES"), (422, "EXP-2-eyes"), (443, "FREE"), (445, "EXP-6-tongue-1"), (475, "HAIR"))
NVS_HOLD_OUT_SERIALS = ("222200046", "222200037", "222200039")
MONO_IDS = (393, 404, 461, 477, 486)
MONO_TRAIN_SEQUENCES = (
    "EXP-1-head", "EXP-2-eyes", "EXP-3-cheeks+nose", "EXP-4-lips", "EXP-5-mouth", "EXP-8-jaw-1", "EXP-9-jaw-2",
    "EMO-2-surprise+fear", "EMO-3-angry+sad", "EMO-4-disgust+happy",
    "SEN-01-cramp_small_danger", "SEN-02-same_phrase_thirty_times", "SEN-03-pluck_bright_rose",
    "SEN-04-two_plus_seven", "SEN-05-glow_eyes_sweet_girl", "SEN-06-problems_wise_chief", "SEN-07-fond_note_fried",
    "SEN-08-clothes_and_lodging",
)
MONO_TEST_SEQUENCES = ("FREE", "EMO-1-shout+laugh", "SEN-09-frown_events_bad", "SEN-10-port_strong_smokey")
MONO_TRAIN_SERIAL = "222200037"
MONO_HOLD_OUT_SERIALS = ("222200046", "220700191", "222200039")
MONO_SERIALS = (MONO_TRAIN_SERIAL,) + MONO_HOLD_OUT_SERIALS
MONO_FPS = 24.3
MONO_RESOLUTION = (512, 512)  # (width, height)
NVS_FPS = 73
NVS_RESOLUTION = (1100, 1604)

TASKS = ("mono_flame_avatar", "nvs")
PROTOCOLS = ("nersemble_mono", "nersemble_mono_local")
DEFAULT_LOCAL_HOLDOUT = MONO_TRAIN_SEQUENCES[-1]
CALIBRATION = "calibration/camera_params.json"
SUBJECT_FILE = "avatarbench_subject.json"


def images_path(root: Path, seq: str, serial: str) -> Path:
    return root / "sequences" / seq / "images" / f"cam_{serial}.mp4"


def alpha_path(root: Path, seq: str, serial: str) -> Path:
    return root / "sequences" / seq / "alpha_maps" / f"cam_{serial}.mp4"


def tracking_path(root: Path, seq: str) -> Path:
    return root / "sequences" / seq / "tracking" / TRACKING_FILE


def camera_id(serial: str, extra: list[str] | None = None) -> int:
    """Index of ``serial`` in :data:`SERIALS`; unknown serials get 16, 17, ... in sorted order."""
    if serial in SERIALS:
        return SERIALS.index(serial)
    extra = sorted(extra or [])
    return len(SERIALS) + (extra.index(serial) if serial in extra else len(extra))


@dataclass
class VideoFrame(Frame):
    """A :class:`Frame` whose image and mask are frames of MP4 videos.

    ``image_path`` / ``mask_path`` are the videos; ``meta["frame_index"]`` is the frame in them.
    """

    def image(self) -> torch.Tensor:
        """(H, W, 3) float32 in [0, 1] at the camera's resolution (the video frame as stored)."""
        from avatarbench.data.video import read_video_frame

        if self.image_path is None:
            raise ValueError(f"frame {self.key} has no ground-truth image")
        a = read_video_frame(self.image_path, int(self.meta["frame_index"]))
        _check_size(self.image_path, a, self.camera.meta.get("native_size"))
        img = torch.from_numpy(a.astype(np.float32) / 255.0)
        return resize_hwc(img, (self.camera.width, self.camera.height)).clamp(0, 1)

    def mask(self) -> torch.Tensor | None:
        """(H, W, 1) float32 in [0, 1] (first channel of the alpha video, as the toolkit's ``load_alpha_map``)."""
        from avatarbench.data.video import read_video_frame

        if self.mask_path is None:
            return None
        a = read_video_frame(self.mask_path, int(self.meta["frame_index"]))[..., :1]
        _check_size(self.mask_path, a, self.camera.meta.get("native_size"))
        m = torch.from_numpy(a.astype(np.float32) / 255.0)
        return resize_hwc(m, (self.camera.width, self.camera.height)).clamp(0, 1)


def _check_size(path, arr: np.ndarray, native) -> None:
    if native is not None and (arr.shape[1], arr.shape[0]) != tuple(native):
        raise DataError(path, f"video is {arr.shape[1]}x{arr.shape[0]} pixels",
                        f"{native[0]}x{native[1]} like the other videos of this participant")


# --------------------------------------------------------------------------- calibration
def read_calibration(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``camera_params.json`` -> serial -> (K (3,3), world_to_cam (4,4) OpenCV), float64."""
    if not path.is_file():
        raise DataError(path, "calibration file not found", "calibration/camera_params.json (is the download complete?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise DataError(path, f"unreadable JSON ({type(e).__name__})", "the toolkit's camera_params.json") from None
    if not isinstance(data, dict) or not isinstance(data.get("world_2_cam"), dict) \
            or not isinstance(data.get("intrinsics"), dict):
        raise DataError(path, "lacks the objects 'world_2_cam' and 'intrinsics'",
                        "{\"world_2_cam\": {serial: 4x4}, \"intrinsics\": {serial: 3x3}}")
    out = {}
    for serial, w2c in data["world_2_cam"].items():
        if serial not in data["intrinsics"]:
            raise DataError(path, f"serial {serial} has world_2_cam but no intrinsics", "both for every camera")
        try:
            E = np.asarray(w2c, np.float64)
            K = np.asarray(data["intrinsics"][serial], np.float64)
        except (TypeError, ValueError):
            raise DataError(path, f"serial {serial}: non-numeric matrix", "numbers") from None
        if E.shape != (4, 4) or K.shape != (3, 3):
            raise DataError(path, f"serial {serial}: world_2_cam {E.shape}, intrinsics {K.shape}", "(4, 4) and (3, 3)")
        if not (np.all(np.isfinite(E)) and np.all(np.isfinite(K))):
            raise DataError(path, f"serial {serial}: non-finite values", "finite matrices")
        out[str(serial)] = (K, E)
    return out


def _camera(serial: str, K: np.ndarray, E: np.ndarray, size: tuple[int, int], scale_world: float,
            extra: list[str]) -> Camera:
    E = E.copy()
    E[:3, 3] /= scale_world
    cam = Camera(K=K, world_to_cam=E, width=size[0], height=size[1], id=camera_id(serial, extra), name=serial)
    cam.meta["native_size"] = tuple(size)
    return cam


def _read_subject_info(root: Path) -> dict:
    p = root / SUBJECT_FILE
    if not p.is_file():
        return {}
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise DataError(p, f"unreadable JSON ({type(e).__name__})", "a JSON object") from None
    if not isinstance(info, dict):
        raise DataError(p, f"top level is a {type(info).__name__}", "a JSON object")
    return info


def _flame_arrays(root: Path, info: dict, flame_model):
    from avatarbench.bodymodels.flame import read_flame_file, resolve_flame_path

    if flame_model is None and info.get("body_model_path"):
        flame_model = (root / info["body_model_path"]).resolve()
    path = resolve_flame_path(flame_model)
    arrays, _ = read_flame_file(path)
    if arrays.get("synthetic") and not info.get("synthetic"):
        from avatarbench.errors import ModelFileError

        raise ModelFileError(f"{root}: the tracking belongs to FLAME 2023, but the FLAME model resolved is the "
                             f"synthetic stand-in ({path}); set $AVATARBENCH_FLAME_MODEL to flame2023.pkl")
    return path, arrays


# --------------------------------------------------------------------------- loader
def detect_task(root: Path) -> str:
    if root.parent.name in TASKS:
        return root.parent.name
    seqs = root / "sequences"
    if seqs.is_dir() and any((p / "tracking").is_dir() for p in seqs.iterdir()):
        return "mono_flame_avatar"
    return "nvs"


def load_nersemble_benchmark(path: str | Path, *, protocol: str = "nersemble_mono", scale: float = 1.0,
                             flame_model: str | Path | None = None, local_holdout: str | None = None) -> Subject:
    """Load one participant of a ``nersemble-benchmark`` download (see the module docstring).

    Args:
        path: ``<folder>/mono_flame_avatar/<pid:03d>``.
        protocol: ``nersemble_mono`` (official split) or ``nersemble_mono_local``.
        scale: resolution factor (images and intrinsics).
        flame_model: FLAME 2023 ``.pkl`` the tracking belongs to (for the root-joint term of the
            conversion); None = the stand-in named in ``avatarbench_subject.json`` (synthetic
            data) or ``$AVATARBENCH_FLAME_MODEL``.
        local_holdout: ``nersemble_mono_local``: the held-out training sequence.
    Raises:
        DataError: partial download (names the first missing file), bad calibration / tracking /
            video; ConfigError: unknown protocol or hold-out sequence.
    """
    from avatarbench.data.video import read_video_frame, video_info

    root = Path(path)
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown NeRSemble benchmark protocol {protocol!r} (expected one of {', '.join(PROTOCOLS)})")
    try:
        pid = int(root.name)
    except ValueError:
        raise DataError(root, "folder name is not a participant id", "<folder>/<task>/<pid:03d>, e.g. .../393") from None
    task = detect_task(root)
    if task != "mono_flame_avatar":
        raise DataError(root, "is an 'nvs' benchmark folder, which has no FLAME tracking",
                        "a mono_flame_avatar participant folder (the suite's head methods are FLAME-driven; "
                        "track nvs sequences with VHAP and load the VHAP export instead)")
    calib = read_calibration(root / CALIBRATION)
    for s in MONO_SERIALS:
        if s not in calib:
            raise DataError(root / CALIBRATION, f"has no camera {s}", f"the cameras {', '.join(MONO_SERIALS)}")
    extra = [s for s in calib if s not in SERIALS]
    # ---- completeness (a partial download names its first missing file) ----
    for seq in MONO_TRAIN_SEQUENCES:
        for p in (images_path(root, seq, MONO_TRAIN_SERIAL), alpha_path(root, seq, MONO_TRAIN_SERIAL),
                  tracking_path(root, seq)):
            if not p.is_file():
                raise DataError(p, "file not found", f"the full {task} download of participant {pid} "
                                "(nersemble-benchmark-download)")
    for seq in MONO_TEST_SEQUENCES:
        if not tracking_path(root, seq).is_file():
            raise DataError(tracking_path(root, seq), "file not found", "the tracking of every test sequence")
    holdout = local_holdout or DEFAULT_LOCAL_HOLDOUT
    if protocol == "nersemble_mono_local" and holdout not in MONO_TRAIN_SEQUENCES:
        raise ConfigError(f"local_holdout={holdout!r} is not a training sequence ({', '.join(MONO_TRAIN_SEQUENCES)})")

    info = _read_subject_info(root)
    model_path, arrays = _flame_arrays(root, info, flame_model)
    j0, j0_dirs = root_joint_linear(arrays)

    # ---- native size from the first training video ----
    first_video = images_path(root, MONO_TRAIN_SEQUENCES[0], MONO_TRAIN_SERIAL)
    _, w0, h0 = video_info(first_video)
    native = (w0, h0)
    work = (max(1, round(w0 * scale)), max(1, round(h0 * scale)))

    def cams_for(s_world: float) -> dict[str, Camera]:
        out = {}
        for serial, (K, E) in calib.items():
            cam = _camera(serial, K, E, native, s_world, extra)
            if work != native:
                rc = cam.resized(*work)
                rc.meta["native_size"] = native
                cam = rc
            out[serial] = cam
        return out

    name = f"nersemble_{pid:03d}" if protocol == "nersemble_mono" else f"nersemble_{pid:03d}_local"
    frames: dict[str, list[Frame]] = {"train": [], "novel_view": [], "self_reenact": []}
    t_offset = 0
    scales: dict[str, float] = {}
    n_frames: dict[str, int] = {}
    ref_cams = None
    for seq in MONO_TRAIN_SEQUENCES + MONO_TEST_SEQUENCES:
        tpath = tracking_path(root, seq)
        driving, s_seq = tracking_to_driving(read_tracking(tpath), j0, j0_dirs)
        T = driving["expr"].shape[0]
        scales[seq], n_frames[seq] = s_seq, T
        cams = cams_for(s_seq)
        if ref_cams is None:
            ref_cams = cams
        is_test = seq in MONO_TEST_SEQUENCES
        gt_serials = [] if is_test else [s for s in calib if images_path(root, seq, s).is_file()]
        for serial in gt_serials:
            n, w, h = video_info(images_path(root, seq, serial))
            if n != T:
                raise DataError(images_path(root, seq, serial), f"has {n} frames",
                                f"{T}, the number of frames in {tpath.name}")
            if (w, h) != native:
                raise DataError(images_path(root, seq, serial), f"video is {w}x{h} pixels",
                                f"{native[0]}x{native[1]} like {first_video.name} of {MONO_TRAIN_SEQUENCES[0]}")
            if not alpha_path(root, seq, serial).is_file():
                raise DataError(alpha_path(root, seq, serial), "file not found", "an alpha map next to every video")

        def make(serial, t, with_gt):
            d = {k: v[t] for k, v in driving.items()}
            meta = {"frame_index": t, "serial": serial, "participant": pid, "scale": s_seq}
            if with_gt:
                return VideoFrame(subject=name, sequence=seq, timestep=t_offset + t, camera=cams[serial],
                                  image_path=images_path(root, seq, serial), mask_path=alpha_path(root, seq, serial),
                                  driving=d, meta=meta)
            return VideoFrame(subject=name, sequence=seq, timestep=t_offset + t, camera=cams[serial],
                              image_path=None, mask_path=None, driving=d, meta=meta)

        for t in range(T):
            if is_test:
                if protocol == "nersemble_mono":
                    frames["self_reenact"] += [make(s, t, False) for s in MONO_SERIALS]
            elif protocol == "nersemble_mono":
                frames["train"].append(make(MONO_TRAIN_SERIAL, t, True))
            elif seq == holdout:
                frames["self_reenact"] += [make(s, t, True) for s in MONO_SERIALS if s in gt_serials]
            else:
                frames["train"].append(make(MONO_TRAIN_SERIAL, t, True))
                frames["novel_view"] += [make(s, t, True) for s in MONO_HOLD_OUT_SERIALS if s in gt_serials]
        t_offset += T

    # background: the colour where alpha = 0 in the first training frame
    rgb0 = read_video_frame(first_video, 0).astype(np.float64) / 255.0
    a0 = read_video_frame(alpha_path(root, MONO_TRAIN_SEQUENCES[0], MONO_TRAIN_SERIAL), 0)[..., 0]
    bgpix = rgb0[a0 < 8]
    bg = tuple(float(x) for x in (bgpix.mean(0) if len(bgpix) else np.ones(3)))
    bg = tuple(0.0 if x < 0.05 else 1.0 if x > 0.95 else round(x, 3) for x in bg)
    for fs in frames.values():
        for f in fs:
            f.background = bg
    first_train = frames["train"][0] if frames["train"] else None
    canonical = {"shape": np.asarray(first_train.driving["shape"])} if first_train else {}
    meta = {"dataset": protocol, "format": "nersemble_benchmark", "task": task, "participant": pid,
            "protocol": protocol, "synthetic": bool(info.get("synthetic", False)),
            "local_holdout": holdout if protocol == "nersemble_mono_local" else None,
            "train_serial": MONO_TRAIN_SERIAL, "scored_serials": list(MONO_SERIALS),
            "test_sequences": list(MONO_TEST_SEQUENCES), "sequence_frames": n_frames, "sequence_scale": scales,
            "fps": MONO_FPS, "submission_resolution": list(MONO_RESOLUTION), "scale": scale,
            "native_size": list(native), "flame_model": str(model_path)}
    cameras = {c.id: c for c in ref_cams.values()}
    return Subject(name, "head", root, cameras, frames, body_model="flame",
                   body_model_path=model_path, background=bg,
                   canonical=canonical, meta=meta)
