"""A synthetic stand-in for the NeRSemble benchmark download, in exactly its layout.

``generate_nersemble_benchmark(out)`` writes ``out/mono_flame_avatar/<pid:03d>/`` for the five
official participant ids (or a chosen subset) with:

- ``calibration/camera_params.json``: the 16 toolkit serials on the synthetic capture rig
  (:mod:`avatarbench.data.synth.rig`; rig camera 8, the frontal one, is serial 222200037 =
  ``SERIALS[8]``), square images of ``size`` pixels, world-to-camera OpenCV 4x4 and 3x3 intrinsics;
- the 18 training sequences: ``images/cam_222200037.mp4`` (background removed = black, as
  rendered by the independent mesh rasterizer), ``alpha_maps/cam_222200037.mp4`` and
  ``tracking/flame2023_tracking_v2.npz``; with ``holdout_views=True`` also the three hold-out
  cameras' videos (not in the official download; they exercise the local protocol's novel views);
- the 4 test sequences: only ``tracking/flame2023_tracking_v2.npz``;
- ``avatarbench_subject.json`` (an extra file the toolkit ignores): ``{"synthetic": true,
  "body_model_path": "../../body_model/flame_synthetic.pkl"}``, the FLAME stand-in the
  tracking belongs to (written to ``out/body_model/``).

Ground truth follows the toolkit's maths: the world mesh is ``scale * R_xyz(rotation) FLAME(...)
+ translation`` (:mod:`avatarbench.data.flame_tracking`), with a per-participant and slightly
per-sequence scale != 1 so that the scale handling is exercised. Videos are libx264 crf 14 at
24.3 fps. The test sequences' images are never written (as in the official download), but
:func:`render_ground_truth` renders them for tests.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import torch

from avatarbench.data.nersemble_benchmark import (
    CALIBRATION,
    MONO_FPS,
    MONO_HOLD_OUT_SERIALS,
    MONO_IDS,
    MONO_TEST_SEQUENCES,
    MONO_TRAIN_SEQUENCES,
    MONO_TRAIN_SERIAL,
    SERIALS,
    SUBJECT_FILE,
    alpha_path,
    images_path,
    tracking_path,
)

BODY_MODEL_DIR = "body_model"
TASK = "mono_flame_avatar"


def motion_kind(seq: str) -> str:
    """The synthetic motion (:func:`avatarbench.data.synth.motion.make_sequence`) used for an official sequence."""
    if seq == "FREE":
        return "FREE"
    if seq.startswith("EMO"):
        return "EMO-1" if seq.startswith(("EMO-1", "EMO-3")) else "EMO-2"
    if seq.startswith("EXP"):
        return "EXP-3" if seq.startswith(("EXP-3", "EXP-1")) else "EXP-2"
    return "EXP-2"  # SEN-*: speech, mostly jaw


def participant_scale(pid: int, seq_index: int) -> float:
    """The tracking scale of a participant's sequence (1.03..1.11, differing by 0.002 per sequence)."""
    return 1.03 + 0.02 * (MONO_IDS.index(pid) if pid in MONO_IDS else pid % 5) + 0.002 * seq_index


def rig_cameras(size: int):
    """The 16 cameras as (serial, Camera) on square ``size`` x ``size`` images (head-and-shoulders crop)."""
    from avatarbench.data.camera import Camera
    from avatarbench.data.synth.rig import FULL_HEIGHT, CaptureRig

    out = []
    for cam, serial in zip(CaptureRig(scale=1.0).full_resolution_cameras(), SERIALS):
        k = 1.3 * size / FULL_HEIGHT  # zoom in a little: the benchmark's 512^2 crops frame the face
        fx, fy = float(cam.fx) * k, float(cam.fy) * k
        cx = size * (0.5 + 0.5 * (float(cam.cx) / cam.width - 0.5))
        cy = size * (0.5 + 0.5 * (float(cam.cy) / cam.height - 0.5))
        out.append((serial, Camera.from_intrinsics(fx, fy, cx, cy, size, size, cam.world_to_cam.numpy(),
                                                   id=SERIALS.index(serial), name=serial)))
    return out


class _Participant:
    def __init__(self, model, pid: int, seed: int, size: int):
        from avatarbench.data.synth.appearance import HeadAppearance
        from avatarbench.data.synth.motion import make_identity_shape

        self.pid = pid
        self.seed = int(seed) * 1000 + int(pid)
        self.shape = make_identity_shape(self.seed, n_shape=300)
        with torch.no_grad():
            canon = model.forward(shape=torch.from_numpy(self.shape)[None]).verts[0]
        self.appearance = HeadAppearance(canon.numpy(), model.faces.numpy(), model.masks, seed=self.seed,
                                         variant=MONO_IDS.index(pid) % 2 if pid in MONO_IDS else 0,
                                         texture_size=(256, 512) if size <= 128 else (512, 1024))
        self.head_position = (0.004 * (pid % 3 - 1), 0.03, -0.005)


def sequence_driving(model, part: _Participant, seq: str, T: int) -> dict[str, np.ndarray]:
    """(T, n) suite driving parameters of a sequence in the world frame divided by its scale."""
    from avatarbench.data.synth.motion import ExpressionUnits, make_sequence

    units = ExpressionUnits.from_model(model)
    motion = make_sequence(motion_kind(seq), T, part.seed ^ (zlib.crc32(seq.encode()) & 0x7FFFFFFF), units,
                           head_position=part.head_position)
    d = dict(motion.params)
    d["shape"] = np.repeat(part.shape[None], T, axis=0)
    return d


def render_ground_truth(model, part: _Participant, driving: dict, scale: float, camera, supersample: int = 2):
    """uint8 RGB (T, H, W, 3) on black and alpha (T, H, W) of a sequence seen by ``camera`` (world frame)."""
    from avatarbench.data.synth.mesh_raster import render_mesh, vertex_normals
    from avatarbench.data.synth.vhap_writer import to_uint8

    with torch.no_grad():
        out = model.forward(**{k: torch.from_numpy(np.asarray(v)) for k, v in driving.items()})
        verts = out.verts * scale  # world = scale * (mesh in the world / scale)
        rgbs, alphas = [], []
        for v in verts:
            rgb, a = render_mesh(v, model.faces, camera, part.appearance.shade, supersample, background=(0.0, 0.0, 0.0),
                                 vertex_attrs=part.appearance.vertex_attrs, normals=vertex_normals(v, model.faces))
            rgbs.append(to_uint8(rgb))
            alphas.append(to_uint8(a[..., 0]))
    return np.stack(rgbs), np.stack(alphas)


def generate_nersemble_benchmark(out_dir: str | Path, *, participants=MONO_IDS, frames_per_sequence: int = 3,
                                 test_frames: int | None = None, size: int = 512, seed: int = 0,
                                 holdout_views: bool = False, verbose: bool = False) -> Path:
    """Write the stand-in download into ``out_dir`` (see the module docstring).

    Args:
        participants: participant ids (the toolkit's writers accept only the official five).
        frames_per_sequence: T of every training sequence (the stand-in is short).
        test_frames: T of the test sequences (None = ``frames_per_sequence``).
        size: square image size (512 = the benchmark's; tests use smaller).
        holdout_views: also write the hold-out cameras' videos of the training sequences.
    Returns:
        ``out_dir / "mono_flame_avatar"``.
    """
    from avatarbench.bodymodels.flame import load_flame, read_flame_file
    from avatarbench.bodymodels.flame_synthetic import write_synthetic_flame
    from avatarbench.data.flame_tracking import driving_to_tracking, root_joint_linear
    from avatarbench.data.video import write_video

    out = Path(out_dir)
    task_dir = out / TASK
    task_dir.mkdir(parents=True, exist_ok=True)
    flame_path = write_synthetic_flame(out / BODY_MODEL_DIR, seed=0)
    model = load_flame(flame_path, teeth=False)  # FLAME 2023 as the toolkit uses it: no teeth
    j0, j0_dirs = root_joint_linear(read_flame_file(flame_path)[0])
    cams = rig_cameras(size)
    cam_by_serial = dict(cams)
    T_test = int(test_frames or frames_per_sequence)
    for pid in participants:
        root = task_dir / f"{int(pid):03d}"
        (root / "calibration").mkdir(parents=True, exist_ok=True)
        calib = {"world_2_cam": {s: c.world_to_cam.numpy().tolist() for s, c in cams},
                 "intrinsics": {s: c.K.numpy().tolist() for s, c in cams}}
        (root / CALIBRATION).write_text(json.dumps(calib, indent=1) + "\n")
        rel = Path("..") / ".." / BODY_MODEL_DIR / flame_path.name
        (root / SUBJECT_FILE).write_text(json.dumps({"name": f"nersemble_{int(pid):03d}", "synthetic": True,
                                                     "body_model_path": str(rel), "dataset": "nersemble_benchmark"},
                                                    indent=2) + "\n")
        part = _Participant(model, int(pid), seed, size)
        for si, seq in enumerate(MONO_TRAIN_SEQUENCES + MONO_TEST_SEQUENCES):
            is_test = seq in MONO_TEST_SEQUENCES
            T = T_test if is_test else int(frames_per_sequence)
            scale = participant_scale(int(pid), si)
            driving = sequence_driving(model, part, seq, T)
            tp = tracking_path(root, seq)
            tp.parent.mkdir(parents=True, exist_ok=True)
            np.savez(tp, **driving_to_tracking(driving, scale, j0, j0_dirs))
            if is_test:
                continue
            serials = [MONO_TRAIN_SERIAL] + (list(MONO_HOLD_OUT_SERIALS) if holdout_views else [])
            for serial in serials:
                rgb, alpha = render_ground_truth(model, part, driving, scale, cam_by_serial[serial])
                for p, frames in ((images_path(root, seq, serial), rgb),
                                  (alpha_path(root, seq, serial), np.repeat(alpha[..., None], 3, axis=-1))):
                    p.parent.mkdir(parents=True, exist_ok=True)
                    write_video(p, list(frames), MONO_FPS, crf=14)
            if verbose:
                print(f"[nersemble-benchmark stand-in] {pid:03d}/{seq}: {T} frames")
    return task_dir


#: preset -> (participants, frames per training sequence, frames per test sequence, image size)
PRESETS = {
    "tiny": ((393,), 1, 2, 48),
    "smoke": (MONO_IDS, 2, 3, 128),
    "full": (MONO_IDS, 12, 12, 512),
}
COMPLETE_FILE = "COMPLETE.json"


def ensure_nersemble_benchmark(out_dir: str | Path | None = None, *, preset: str = "smoke", seed: int = 0) -> Path:
    """The stand-in's ``mono_flame_avatar`` folder, generated once (into a temporary sibling, renamed
    when complete).

    Args:
        out_dir: the download folder (holding ``mono_flame_avatar/``); None =
            ``cache_dir()/synthetic/nersemble_benchmark/<preset>_seed<seed>``.
        preset: ``tiny`` (1 participant, 48^2), ``smoke`` (5 participants, 128^2) or ``full`` (512^2).
    """
    import os
    import shutil
    import uuid

    from avatarbench.errors import ConfigError
    from avatarbench.paths import cache_dir

    if preset not in PRESETS:
        raise ConfigError(f"unknown nersemble-benchmark stand-in preset {preset!r} (known: {', '.join(PRESETS)})")
    final = Path(out_dir) if out_dir else cache_dir() / "synthetic" / "nersemble_benchmark" / f"{preset}_seed{seed}"
    if (final / COMPLETE_FILE).is_file():
        return final / TASK
    if final.exists() and any(final.iterdir()):
        raise ConfigError(f"{final}: exists and is not a complete stand-in; choose an empty --out")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    parts, t_train, t_test, size = PRESETS[preset]
    try:
        generate_nersemble_benchmark(tmp, participants=parts, frames_per_sequence=t_train, test_frames=t_test,
                                     size=size, seed=seed)
        (tmp / COMPLETE_FILE).write_text(json.dumps({"preset": preset, "seed": seed}) + "\n")
        if final.exists():
            final.rmdir()
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final / TASK
