"""A hand-made writer of tiny VHAP-format folders for the data-layer tests.

It follows the layout VHAP's exporter and union assembler produce (reference sheet
``gaussian_avatars.md`` section 1), independently of avatarbench's synthetic generator:

- one folder per sequence, ``<SUBJ>_<SEQ>_v16_fixture/`` with ``images/{ti:05d}_{ci:02d}.png``,
  ``fg_masks/...png``, ``flame_param/{ti:05d}.npz`` (local ti), ``canonical_flame_param.npz``,
  ``transforms.json`` and ``transforms_{train,val,test}.json`` (VHAP ``split_json``: first 70 %
  of timesteps train/val, the rest test; camera 8 -- else the last camera -- is the val camera);
- a union folder ``UNION_<SUBJ>_fixture/`` beside them: global timestep renumbering, ``../``
  paths, train/val from the training sequences, test from the held-out ones,
  ``sequences_{trainval,test}.txt`` and a copy of the first training sequence's canonical npz.

Everything is deterministic so tests can compare against hand-computed values:

- camera ``ci`` sits on a horizontal arc of radius 1 around the sequence's head centre at yaw
  ``YAWS[ci]`` degrees, looks at it, with ``fx = 20 + ci``, ``fy = 1.25 fx``,
  ``cx = w/2 + 0.75``, ``cy = h/2 - 1.25`` (fx != fy, off-centre principal point);
- each sequence is "recentred" like VHAP: its cameras are shifted by ``seq_shift(k)`` (the head
  centre of sequence k), so cameras differ per sequence;
- FLAME parameters of subject code ``s``, global timestep ``t``: see :func:`flame_arrays`;
- images are RGBA: colour ``image_colour(ci, t)`` with alpha 1 inside a centred rectangle
  (rows 4..11, cols 3..8 of a 16 x 12 image), alpha 0 outside.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np

W, H = 12, 16
NUM_VERTS = 10
#: camera index -> yaw in degrees (positive = towards world +x)
YAWS = {5: -60.0, 6: -40.0, 7: -20.0, 8: 0.0, 9: 20.0, 10: 40.0, 11: 60.0}
INNER = (slice(4, 12), slice(3, 9))  # rows, cols of the opaque rectangle


def intrinsics(ci: int) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of camera ``ci``."""
    fx = 20.0 + ci
    return fx, 1.25 * fx, W / 2 + 0.75, H / 2 - 1.25


def seq_shift(k: int) -> np.ndarray:
    """(3,) head centre of the k-th sequence (VHAP recentring moves the cameras by this)."""
    return np.array([0.01 * k, -0.02 * k, 0.005 * k])


def opengl_c2w(ci: int, centre: np.ndarray, radius: float = 1.0) -> np.ndarray:
    """(4, 4) OpenGL camera-to-world of camera ``ci`` looking at ``centre`` (x right, y up, z back)."""
    yaw = math.radians(YAWS[ci])
    pos = centre + radius * np.array([math.sin(yaw), 0.0, math.cos(yaw)])
    z = (pos - centre) / np.linalg.norm(pos - centre)  # backwards = away from the target
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, pos
    return m


def flame_arrays(code: int, t: int, num_verts: int = NUM_VERTS, dynamic: bool = False) -> dict[str, np.ndarray]:
    """VHAP-shaped FLAME parameters (with batch dims) of subject ``code`` at global timestep ``t``."""
    p = {
        "shape": np.full(300, float(code), dtype=np.float32),
        "expr": np.full((1, 100), 0.01 * t + code, dtype=np.float32),
        "rotation": np.array([[0.001 * t, 0.1 * code, 0.0]], dtype=np.float32),
        "neck_pose": np.array([[0.0, 0.002 * t, 0.0]], dtype=np.float32),
        "jaw_pose": np.array([[0.003 * t, 0.0, 0.0]], dtype=np.float32),
        "eyes_pose": np.full((1, 6), 0.004 * t, dtype=np.float32),
        "translation": np.array([[0.0, 0.0, 0.01 * t + code]], dtype=np.float32),
        "static_offset": np.full((1, num_verts, 3), 0.001 * code, dtype=np.float32),
    }
    if dynamic:
        p["dynamic_offset"] = np.full((1, num_verts, 3), 0.1 * t, dtype=np.float32)
    return p


def image_colour(ci: int, t: int) -> tuple[int, int, int]:
    return (10 * ci % 256, (30 + 7 * t) % 256, 200)


def rgba_image(ci: int, t: int) -> np.ndarray:
    img = np.zeros((H, W, 4), dtype=np.uint8)
    img[..., :3] = image_colour(ci, t)
    img[INNER + (3,)] = 255
    return img


@dataclass
class SequenceInfo:
    folder: Path
    name: str
    local_timesteps: list[int]
    global_timesteps: list[int] = field(default_factory=list)


def _frame(ci: int, ti: int, c2w: np.ndarray, prefix: str = "") -> dict:
    fx, fy, cx, cy = intrinsics(ci)
    return {
        "timestep_index": ti, "timestep_index_original": ti, "timestep_id": f"frame_{ti:05d}",
        "camera_index": ci, "camera_id": f"2222000{ci:02d}",
        "cx": cx, "cy": cy, "fl_x": fx, "fl_y": fy, "h": H, "w": W,
        "camera_angle_x": 2 * math.atan(W / (2 * fx)), "camera_angle_y": 2 * math.atan(H / (2 * fy)),
        "transform_matrix": c2w.tolist(),
        "file_path": f"{prefix}images/{ti:05d}_{ci:02d}.png",
        "fg_mask_path": f"{prefix}fg_masks/{ti:05d}_{ci:02d}.png",
        "flame_param_path": f"{prefix}flame_param/{ti:05d}.npz",
    }


def _db(frames: list[dict], cams: list[int], tis: list[int]) -> dict:
    ci = cams[-1]
    fx, fy, cx, cy = intrinsics(ci)
    return {"frames": frames, "cx": cx, "cy": cy, "fl_x": fx, "fl_y": fy, "h": H, "w": W,
            "camera_angle_x": 2 * math.atan(W / (2 * fx)), "camera_angle_y": 2 * math.atan(H / (2 * fy)),
            "timestep_indices": sorted(tis), "camera_indices": sorted(cams)}


def _dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1))


def _val_camera(cams: list[int]) -> int:
    return 8 if 8 in cams else cams[-1]


def write_sequence(parent: Path, subject: str, seq: str, code: int, *, k: int = 0, num_timesteps: int = 3,
                   t0: int = 0, cams: tuple[int, ...] = tuple(YAWS), gt_mesh: bool = False,
                   dynamic: bool = False) -> SequenceInfo:
    """Write one VHAP sequence folder; FLAME values use global timesteps ``t0 + ti``."""
    folder = parent / f"{subject}_{seq}_v16_fixture"
    for sub in ("images", "fg_masks", "flame_param"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    centre = seq_shift(k)
    frames = []
    tis = list(range(num_timesteps))
    for ti in tis:
        np.savez(folder / "flame_param" / f"{ti:05d}.npz", **flame_arrays(code, t0 + ti, dynamic=dynamic))
        if gt_mesh:
            (folder / "gt_mesh").mkdir(exist_ok=True)
            np.save(folder / "gt_mesh" / f"{ti:05d}.npy", np.full((NUM_VERTS, 3), float(t0 + ti), np.float32))
        for ci in cams:
            img = rgba_image(ci, t0 + ti)
            iio.imwrite(folder / "images" / f"{ti:05d}_{ci:02d}.png", img)
            iio.imwrite(folder / "fg_masks" / f"{ti:05d}_{ci:02d}.png", img[..., 3])
            fr = _frame(ci, ti, opengl_c2w(ci, centre))
            if gt_mesh:
                fr["gt_mesh_path"] = f"gt_mesh/{ti:05d}.npy"
            frames.append(fr)
    if gt_mesh:
        np.save(folder / "gt_mesh" / "faces.npy", np.array([[0, 1, 2], [2, 3, 4]], dtype=np.int64))
    cano = flame_arrays(code, 0)
    cano.update({k_: np.zeros_like(v) for k_, v in cano.items() if k_ not in ("shape", "static_offset")})
    cano["jaw_pose"] = np.array([[0.3, 0.0, 0.0]], dtype=np.float32)
    np.savez(folder / "canonical_flame_param.npz", **cano)
    db = _db(frames, list(cams), tis)
    _dump(folder / "transforms.json", db)
    # VHAP split_json: first ceil(70 %) timesteps -> train/val, the rest -> test (all cameras)
    nt_train = math.ceil(len(tis) * 0.7)
    vc = _val_camera(list(cams))
    train = [f for f in frames if f["timestep_index"] < nt_train and f["camera_index"] != vc]
    val = [f for f in frames if f["timestep_index"] < nt_train and f["camera_index"] == vc]
    test = [f for f in frames if f["timestep_index"] >= nt_train]
    for name, fl in (("train", train), ("val", val), ("test", test)):
        _dump(folder / f"transforms_{name}.json", _db(fl, list(cams), sorted({f["timestep_index"] for f in fl})))
    return SequenceInfo(folder, seq, tis)


@dataclass
class UnionFixture:
    root: Path
    subject: str
    code: int
    train_seqs: list[SequenceInfo]
    test_seqs: list[SequenceInfo]

    @property
    def sequences(self) -> list[SequenceInfo]:
        return self.train_seqs + self.test_seqs


def write_union(parent: Path, subject: str = "077", code: int = 1, *, train=("EMO-1", "EXP-2"), test=("EXP-4",),
                num_timesteps: int = 2, cams: tuple[int, ...] = tuple(YAWS), gt_mesh: bool = False,
                dynamic: bool = False, subject_json: dict | None = None) -> UnionFixture:
    """Write sequence folders plus a VHAP union folder ``UNION_<subject>_fixture`` in ``parent``."""
    parent.mkdir(parents=True, exist_ok=True)
    root = parent / f"UNION_{subject}_fixture"
    root.mkdir(exist_ok=True)
    seqs: list[SequenceInfo] = []
    t = 0
    for k, name in enumerate(list(train) + list(test)):
        info = write_sequence(parent, subject, name, code, k=k, num_timesteps=num_timesteps, t0=t, cams=cams,
                              gt_mesh=gt_mesh, dynamic=dynamic)
        info.global_timesteps = [t + ti for ti in info.local_timesteps]
        t += num_timesteps
        seqs.append(info)
    train_infos, test_infos = seqs[: len(train)], seqs[len(train):]

    def union_frames(infos):
        frames = []
        for info in infos:
            db = json.loads((info.folder / "transforms.json").read_text())
            for fr in db["frames"]:
                fr = dict(fr)
                fr.pop("timestep_index_original")
                fr.pop("timestep_id")
                fr["timestep_index"] = info.global_timesteps[fr["timestep_index"]]
                for key in ("file_path", "flame_param_path", "fg_mask_path", "gt_mesh_path"):
                    if key in fr:
                        fr[key] = f"../{info.folder.name}/{fr[key]}"
                frames.append(fr)
        return frames

    tr = union_frames(train_infos)
    vc = _val_camera(list(cams))
    tis_tr = sorted({f["timestep_index"] for f in tr})
    _dump(root / "transforms_train.json", _db([f for f in tr if f["camera_index"] != vc], list(cams), tis_tr))
    _dump(root / "transforms_val.json", _db([f for f in tr if f["camera_index"] == vc], [vc], tis_tr))
    te = union_frames(test_infos)
    _dump(root / "transforms_test.json", _db(te, list(cams), sorted({f["timestep_index"] for f in te})))
    (root / "sequences_trainval.txt").write_text("".join(i.folder.name + "\n" for i in train_infos))
    (root / "sequences_test.txt").write_text("".join(i.folder.name + "\n" for i in test_infos))
    shutil.copy(train_infos[0].folder / "canonical_flame_param.npz", root / "canonical_flame_param.npz")
    if subject_json is not None:
        _dump(root / "avatarbench_subject.json", subject_json)
    return UnionFixture(root, subject, code, train_infos, test_infos)


def edit_json(path: Path, fn) -> None:
    """Load a JSON file, apply ``fn(doc)`` in place, write it back."""
    doc = json.loads(path.read_text())
    fn(doc)
    _dump(path, doc)
