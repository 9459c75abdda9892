"""Write subjects in the VHAP / NeRSemble export layout that GaussianAvatars trains on.

Layout (reference sheet ``gaussian_avatars.md`` section 1; VHAP ``export_as_nerf_dataset.py`` and
``combine_nerf_datasets.py``)::

    <parent>/
      <SUBJ>_<SEQ>_<suffix>/                      one folder per sequence
          images/{ti:05d}_{ci:02d}.png            RGB on white
          fg_masks/{ti:05d}_{ci:02d}.png          8-bit alpha
          flame_param/{ti:05d}.npz                per-timestep FLAME parameters (local ti)
          canonical_flame_param.npz
          transforms.json, transforms_{train,val,test}.json
          transforms_backup.json                  cameras before relocation, no FLAME paths
          transforms_backup_flame.json            = transforms.json
          gt_mesh/{ti:05d}.npy, gt_mesh/faces.npy (avatarbench extra: ground-truth geometry)
      UNION_<SUBJ>_<SEQS>_<suffix>/               sibling of the sequence folders
          transforms_{train,val,test}.json        paths ../<seq_folder>/..., global timesteps
          canonical_flame_param.npz               copied from the first training sequence
          sequences_trainval.txt, sequences_test.txt
          avatarbench_subject.json                (avatarbench extra)

Per-sequence splits follow VHAP's ``split_json`` (first ceil(70 %) of the timesteps: train =
cameras other than 8, val = camera 8; the rest: test, all cameras). Union splits follow
``NeRFDatasetAssembler``: train/val = the training sequences without/with camera 8, test = the
held-out sequence(s), all cameras; timesteps renumbered globally, training sequences first.
Cameras are written as OpenGL camera-to-world ``transform_matrix`` after VHAP's relocation
(``c2w' = M @ c2w``, M = translation by minus the sequence's mean FLAME translation).
"""

from __future__ import annotations

import json
import math
import shutil
from copy import deepcopy
from pathlib import Path

import numpy as np

from avatarbench.data.camera import Camera

NOVEL_VIEW_CAMERA = 8
TRAIN_RATIO = 0.7
#: VHAP's per-timestep npz keys -> shape without the timestep batch (V = model vertices)
FLAME_NPZ_KEYS = ("translation", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "shape", "expr", "static_offset")


def _png(path: Path, arr: np.ndarray) -> None:
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, arr, extension=".png")


def to_uint8(img) -> np.ndarray:
    """(H, W, C) or (H, W) float in [0, 1] (numpy or torch) -> uint8, round to nearest."""
    a = img.detach().cpu().numpy() if hasattr(img, "detach") else np.asarray(img)
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def camera_record(cam: Camera) -> dict:
    """VHAP's per-frame intrinsics + OpenGL c2w of a camera (at the image's resolution)."""
    fx, fy, cx, cy = cam.fx, cam.fy, cam.cx, cam.cy
    w, h = cam.width, cam.height
    return {
        "cx": cx, "cy": cy, "fl_x": fx, "fl_y": fy, "h": h, "w": w,
        "camera_angle_x": math.atan(w / (fx * 2)) * 2,
        "camera_angle_y": math.atan(h / (fy * 2)) * 2,
        "transform_matrix": cam.opengl_c2w.numpy().tolist(),
    }


def _write_json(db: dict, path: Path) -> None:
    """Write a transforms JSON with one frame per line (the C encoder; ``indent`` would use the slow
    pure-Python one for thousands of frames)."""
    parts = []
    for k, v in db.items():
        if k == "frames":
            body = ",\n".join("    " + json.dumps(f) for f in v)
            parts.append(f'  "frames": [\n{body}\n  ]' if v else '  "frames": []')
        else:
            parts.append(f"  {json.dumps(k)}: {json.dumps(v)}")
    path.write_text("{\n" + ",\n".join(parts) + "\n}\n")


def _shared_intrinsics(frames: list[dict]) -> dict:
    last = frames[-1]  # VHAP copies the last frame's intrinsics to the top level
    return {k: last[k] for k in ("cx", "cy", "fl_x", "fl_y", "h", "w", "camera_angle_x", "camera_angle_y")}


class SequenceWriter:
    """Write one sequence folder.

    Args:
        folder: the sequence folder ``<SUBJ>_<SEQ>_<suffix>``.
        cameras: the rig cameras in the capture world (index = camera index), before relocation.
        relocation: (4, 4) VHAP relocation ``M`` applied to camera-to-world matrices.
        faces: (F, 3) mesh faces of the ground-truth geometry.
    """

    def __init__(self, folder: Path, cameras: list[Camera], relocation: np.ndarray, faces: np.ndarray):
        self.folder = Path(folder)
        self.cameras_capture = cameras
        M = np.asarray(relocation, dtype=np.float64)
        self.M = M
        # relocated cameras: c2w' = M c2w  <=>  w2c' = w2c M^-1
        Minv = np.linalg.inv(M)
        self.cameras = [Camera(K=c.K.clone(), world_to_cam=c.world_to_cam.numpy() @ Minv, width=c.width,
                               height=c.height, id=c.id, name=c.name) for c in cameras]
        self.faces = np.asarray(faces, dtype=np.int32)
        self.frames: list[dict] = []
        self.backup_frames: list[dict] = []
        self.timesteps: list[int] = []
        for sub in ("images", "fg_masks", "flame_param", "gt_mesh"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        np.save(self.folder / "gt_mesh" / "faces.npy", self.faces)
        self._static = None

    def write_timestep(self, ti: int, flame: dict[str, np.ndarray], gt_verts: np.ndarray,
                       renders: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Write one timestep.

        Args:
            ti: local timestep index (0, 1, ... in order).
            flame: VHAP npz arrays: translation (1,3), rotation (1,3), neck_pose (1,3),
                jaw_pose (1,3), eyes_pose (1,6), shape (300,), expr (1,100), static_offset (1,V,3).
            gt_verts: (V, 3) world vertices (after relocation).
            renders: per camera (same order as ``cameras``): rgb (H, W, 3) uint8 on white and
                alpha (H, W) uint8.
        """
        if ti != len(self.timesteps):
            raise ValueError(f"timesteps must be written in order: got {ti}, expected {len(self.timesteps)}")
        for k in FLAME_NPZ_KEYS:
            if k not in flame:
                raise ValueError(f"FLAME parameters lack {k!r}")
        np.savez(self.folder / "flame_param" / f"{ti:05d}.npz", **{k: flame[k] for k in FLAME_NPZ_KEYS})
        if self._static is None:
            self._static = {k: flame[k] for k in ("shape", "static_offset")}
        gt_rel = f"gt_mesh/{ti:05d}.npy"
        np.save(self.folder / gt_rel, np.asarray(gt_verts, dtype=np.float32))
        for cam, cam_cap, (rgb, alpha) in zip(self.cameras, self.cameras_capture, renders):
            ci = cam.id
            if rgb.shape[:2] != (cam.height, cam.width):
                raise ValueError(f"camera {ci}: image {rgb.shape[:2]} != ({cam.height}, {cam.width})")
            img_rel = f"images/{ti:05d}_{ci:02d}.png"
            mask_rel = f"fg_masks/{ti:05d}_{ci:02d}.png"
            _png(self.folder / img_rel, rgb)
            _png(self.folder / mask_rel, alpha)
            head = {"timestep_index": ti, "timestep_index_original": ti, "timestep_id": f"frame_{ti:05d}",
                    "camera_index": ci, "camera_id": cam.name}
            paths = {"file_path": img_rel, "fg_mask_path": mask_rel}
            self.backup_frames.append({**head, **camera_record(cam_cap), **paths})
            self.frames.append({**head, **camera_record(cam), **paths,
                                "flame_param_path": f"flame_param/{ti:05d}.npz", "gt_mesh_path": gt_rel})
        self.timesteps.append(ti)

    def finish(self) -> Path:
        """Write the JSONs and ``canonical_flame_param.npz``; returns the folder."""
        if not self.frames:
            raise ValueError(f"{self.folder}: no timesteps written")
        cams = sorted({f["camera_index"] for f in self.frames})

        def db_of(frames):
            db = {"frames": frames}
            db.update(_shared_intrinsics(frames))
            db["timestep_indices"] = sorted(set(self.timesteps))
            db["camera_indices"] = cams
            return db

        _write_json(db_of(self.backup_frames), self.folder / "transforms_backup.json")
        db = db_of(self.frames)
        _write_json(db, self.folder / "transforms.json")
        _write_json(db, self.folder / "transforms_backup_flame.json")
        write_canonical_flame_param(self.folder / "canonical_flame_param.npz", self._static["shape"],
                                    self._static["static_offset"])
        split_sequence_json(self.folder)
        return self.folder


def write_canonical_flame_param(path: Path, shape: np.ndarray, static_offset: np.ndarray) -> None:
    """VHAP's ``canonical_flame_param.npz``: zero pose/expression, open jaw, identity carried over."""
    np.savez(path,
             translation=np.zeros((1, 3), np.float32), rotation=np.zeros((1, 3), np.float32),
             neck_pose=np.zeros((1, 3), np.float32), jaw_pose=np.array([[0.3, 0, 0]]),
             eyes_pose=np.zeros((1, 6), np.float32), shape=np.asarray(shape, np.float32),
             expr=np.zeros((1, 100), np.float32), static_offset=np.asarray(static_offset, np.float32))


def split_sequence_json(folder: Path, train_ratio: float = TRAIN_RATIO) -> None:
    """VHAP's per-sequence split: train/val on the first ceil(ratio * T) timesteps, test on the rest."""
    db = json.loads((folder / "transforms.json").read_text())
    base = {k: v for k, v in db.items() if k not in ("frames", "timestep_indices", "camera_indices")}
    tr, va, te = (deepcopy(base) for _ in range(3))
    for d in (tr, va, te):
        d["frames"] = []
    ts = sorted(db["timestep_indices"])
    n_train = int(np.ceil(len(ts) * train_ratio))
    tr["timestep_indices"] = ts[:n_train]
    va["timestep_indices"] = ts[:n_train]
    te["timestep_indices"] = ts[n_train:]
    cams = db["camera_indices"]
    if len(cams) > 1:
        if NOVEL_VIEW_CAMERA in cams:
            tr["camera_indices"] = [c for c in cams if c != NOVEL_VIEW_CAMERA]
            va["camera_indices"] = [NOVEL_VIEW_CAMERA]
        else:
            tr["camera_indices"], va["camera_indices"] = cams[:-1], [cams[-1]]
    else:
        tr["camera_indices"], va["camera_indices"] = cams, []
    te["camera_indices"] = cams
    train_ts = set(ts[:n_train])
    for f in db["frames"]:
        if f["timestep_index"] in train_ts:
            (tr if f["camera_index"] in tr["camera_indices"] else va)["frames"].append(f)
        else:
            te["frames"].append(f)
    for name, d in (("train", tr), ("val", va), ("test", te)):
        _write_json(d, folder / f"transforms_{name}.json")


_PATH_KEYS = ("file_path", "fg_mask_path", "flame_param_path", "gt_mesh_path")


def write_union(union_folder: Path, train_folders: list[Path], test_folders: list[Path],
                subject_info: dict | None = None) -> Path:
    """Combine sequence folders into a VHAP UNION folder (a sibling of them).

    Args:
        union_folder: ``<parent>/UNION_<SUBJ>_...``.
        train_folders: training sequences (train = cameras != 8, val = camera 8), in order.
        test_folders: held-out sequences (test, all cameras).
        subject_info: written as ``avatarbench_subject.json`` when given.
    """
    union_folder = Path(union_folder)
    for f in list(train_folders) + list(test_folders):
        if Path(f).parent.resolve() != union_folder.parent.resolve():
            raise ValueError(f"{f} is not a sibling of {union_folder}")
    union_folder.mkdir(parents=True, exist_ok=True)
    num_timestep = 0

    def combine(folders):
        nonlocal num_timestep
        db = None
        for folder in folders:
            dbi = json.loads((Path(folder) / "transforms.json").read_text())
            dbi["timestep_indices"] = [t + num_timestep for t in dbi["timestep_indices"]]
            num_timestep += len(dbi["timestep_indices"])
            for fr in dbi["frames"]:
                fr.pop("timestep_index_original", None)
                fr.pop("timestep_id", None)
                fr["timestep_index"] = dbi["timestep_indices"][fr["timestep_index"]]
                for k in _PATH_KEYS:
                    if k in fr:
                        fr[k] = f"../{Path(folder).name}/{fr[k]}"
            if db is None:
                db = dbi
            else:
                db["frames"] += dbi["frames"]
                db["timestep_indices"] += dbi["timestep_indices"]
        return db

    db = combine(train_folders)
    shutil.copy(Path(train_folders[0]) / "canonical_flame_param.npz", union_folder / "canonical_flame_param.npz")
    tr = {k: v for k, v in db.items() if k not in ("frames", "camera_indices")}
    va = deepcopy(tr)
    cams = db["camera_indices"]
    if NOVEL_VIEW_CAMERA in cams:
        tr["camera_indices"] = [c for c in cams if c != NOVEL_VIEW_CAMERA]
        va["camera_indices"] = [NOVEL_VIEW_CAMERA]
    else:
        tr["camera_indices"], va["camera_indices"] = cams[:-1], [cams[-1]]
    tr["frames"] = [f for f in db["frames"] if f["camera_index"] in tr["camera_indices"]]
    va["frames"] = [f for f in db["frames"] if f["camera_index"] in va["camera_indices"]]
    _write_json(tr, union_folder / "transforms_train.json")
    _write_json(va, union_folder / "transforms_val.json")
    (union_folder / "sequences_trainval.txt").write_text("".join(Path(f).name + "\n" for f in train_folders))

    te = combine(test_folders)
    te["timestep_indices"] = sorted(te["timestep_indices"])
    _write_json(te, union_folder / "transforms_test.json")
    (union_folder / "sequences_test.txt").write_text("".join(Path(f).name + "\n" for f in test_folders))
    if subject_info is not None:
        (union_folder / "avatarbench_subject.json").write_text(json.dumps(subject_info, indent=2) + "\n")
    return union_folder
