"""Loader for VHAP-exported NeRSemble data: the format GaussianAvatars trains on.

A VHAP folder is either one sequence (``<SUBJ>_<SEQ>_<suffix>/``) or a UNION folder whose JSONs
point into sibling sequence folders with ``../<seq_folder>/...`` paths (see
``datasets/nersemble_vhap.md`` and the reference sheet ``gaussian_avatars.md`` section 1)::

    transforms_train.json   -> split ``train``          (all cameras but the novel-view one)
    transforms_val.json     -> split ``novel_view``     (camera 8, training timesteps)
    transforms_test.json    -> split ``self_reenact``   (held-out sequence(s), all cameras)
    canonical_flame_param.npz, sequences_trainval.txt, sequences_test.txt   (union folders)

Per frame the JSON holds ``cx, cy, fl_x, fl_y, w, h`` (top-level copies are the fallback),
``transform_matrix`` (OpenGL camera-to-world), ``file_path``, ``fg_mask_path``,
``flame_param_path``, ``timestep_index`` (global in a union) and ``camera_index``.

Unlike the official GaussianAvatars ``main`` branch, which assumes fx = fy and a centred principal
point, the full intrinsics are used. Cameras are converted to OpenCV. ``scale`` resizes images
and intrinsics consistently (:meth:`Camera.resized`).

Non-standard keys written by avatarbench's synthetic generator (all optional):

- per frame ``gt_mesh_path``: a (V, 3) ``.npy`` of ground-truth vertices for that timestep; the
  faces are ``faces.npy`` in the same folder (else ``<root>/gt_mesh/faces.npy``);
- ``avatarbench_subject.json`` in the folder: ``{"name": str, "synthetic": bool,
  "body_model_path": "<path relative to the folder>", "dataset": str}``.

Validation: JSON structure and keys, and the existence of FLAME parameter (and ground-truth mesh)
files are checked at load time, as is the content of the first FLAME file; the other FLAME files
load (and are validated) on first access, images load when ``Frame.image()`` is called.
Every problem raises :class:`~avatarbench.errors.DataError` with one line naming the file and field.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avatarbench.data.camera import Camera
from avatarbench.data.flame_params import LazyParams, read_flame_params
from avatarbench.data.safe_paths import dataset_file
from avatarbench.data.subject import Frame, Subject
from avatarbench.errors import ConfigError, DataError

#: our split name -> VHAP file
SPLIT_FILES = {
    "train": "transforms_train.json",
    "novel_view": "transforms_val.json",
    "self_reenact": "transforms_test.json",
}
CANONICAL_FILE = "canonical_flame_param.npz"
SUBJECT_FILE = "avatarbench_subject.json"
SEQUENCE_FILES = {"trainval": "sequences_trainval.txt", "test": "sequences_test.txt"}

_REQUIRED_FRAME_KEYS = ("file_path", "transform_matrix", "timestep_index", "camera_index", "flame_param_path")


# --------------------------------------------------------------------------- small readers
def read_json(path: Path, what: str) -> Any:
    """Read a JSON file, turning every failure into one DataError line."""
    if not path.is_file():
        raise DataError(path, "file not found", what)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON (line {e.lineno}, column {e.colno}: {e.msg})", what) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"unreadable file ({type(e).__name__})", what) from None


def _read_lines(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    try:
        return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"unreadable file ({type(e).__name__})", "one sequence folder name per line") from None


def _read_subject_info(root: Path) -> dict:
    path = root / SUBJECT_FILE
    if not path.exists():
        return {}
    info = read_json(path, "a JSON object with optional keys name, synthetic, body_model_path, dataset")
    if not isinstance(info, dict):
        raise DataError(path, f"top level is a {type(info).__name__}", "a JSON object")
    types = {"name": str, "synthetic": bool, "body_model_path": str, "dataset": str}
    for key, typ in types.items():
        if key in info and info[key] is not None and not isinstance(info[key], typ):
            raise DataError(path, f"field {key!r} is {info[key]!r}", f"a {typ.__name__}")
    return info


# --------------------------------------------------------------------------- names
def sequence_folder(rel_path: str, root: Path) -> str:
    """The sequence folder a frame's ``file_path`` lives in.

    Union JSONs use ``../<seq_folder>/images/...``; single-sequence JSONs use ``images/...``
    relative to the sequence folder itself (``root``).
    """
    parts = [p for p in str(rel_path).replace("\\", "/").split("/") if p not in (".", "")]
    if len(parts) >= 3 and parts[0] == "..":
        return parts[1]
    return root.name


def subject_from_folder(folder: str) -> str:
    """VHAP names sequence folders ``<SUBJ>_<SEQ>_<suffix>``: the subject is the first token."""
    return folder.split("_")[0] if folder else folder


def sequence_from_folder(folder: str, subject: str) -> str:
    """``306_EMO-1_v16_DS4_...`` -> ``EMO-1`` (the token after the subject prefix)."""
    if subject and folder.startswith(subject + "_"):
        rest = folder[len(subject) + 1:]
        return rest.split("_")[0] or folder
    tokens = folder.split("_")
    return tokens[1] if len(tokens) >= 2 and tokens[1] else folder


class _PathJoiner:
    """``root / rel`` with the folder part cached (pathlib parsing dominates loading ~30k frames)."""

    def __init__(self, root: Path):
        self.root = root
        self.dirs: dict[str, Path] = {}

    def __call__(self, rel: str) -> Path:
        head, sep, base = rel.rpartition("/")
        if not sep or not base or base in (".", ".."):
            return self.root / rel
        d = self.dirs.get(head)
        if d is None:
            d = self.dirs[head] = self.root / head
        return d / base


# --------------------------------------------------------------------------- frame parsing
def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


class _FrameParser:
    """Parses the frames of one transforms JSON, with one-line errors naming file/frame/key."""

    def __init__(self, json_path: Path, doc: Any):
        self.path = json_path
        if not isinstance(doc, dict):
            raise DataError(json_path, f"top level is a {type(doc).__name__}", "a JSON object with a 'frames' list")
        if "frames" not in doc:
            raise DataError(json_path, "missing key 'frames'", "a JSON object with a 'frames' list")
        if not isinstance(doc["frames"], list):
            raise DataError(json_path, f"key 'frames' is a {type(doc['frames']).__name__}", "a list of frame objects")
        self.top = doc
        self.frames = doc["frames"]

    def fail(self, i: int, problem: str, expected: str) -> DataError:
        return DataError(self.path, f"frame {i}: {problem}", expected)

    def _intrinsic(self, fr: dict, i: int, key: str) -> float | None:
        for src, where in ((fr, ""), (self.top, "top-level ")):
            if key in src:
                v = _number(src[key])
                if v is None:
                    raise self.fail(i, f"{where}key {key!r} is {src[key]!r}", "a finite number")
                return v
        return None

    def intrinsics(self, fr: dict, i: int) -> tuple[float, float, float, float, int, int]:
        """(fx, fy, cx, cy, w, h): frame values, else top-level, else NeRF fallbacks."""
        vals = {}
        for key in ("w", "h"):
            v = self._intrinsic(fr, i, key)
            if v is None:
                raise self.fail(i, f"missing key {key!r} (and no top-level {key!r})", "image width/height in pixels")
            if v <= 0 or v != int(v):
                raise self.fail(i, f"key {key!r} is {v}", "a positive whole number of pixels")
            vals[key] = int(v)
        w, h = vals["w"], vals["h"]
        fx = self._intrinsic(fr, i, "fl_x")
        if fx is None:
            ax = self._intrinsic(fr, i, "camera_angle_x")
            if ax is None:
                raise self.fail(i, "missing key 'fl_x' (and no top-level 'fl_x' or 'camera_angle_x')",
                                "focal length in pixels")
            fx = 0.5 * w / math.tan(0.5 * ax)
        fy = self._intrinsic(fr, i, "fl_y")
        if fy is None:
            ay = self._intrinsic(fr, i, "camera_angle_y")
            fy = 0.5 * h / math.tan(0.5 * ay) if ay is not None else fx
        cx = self._intrinsic(fr, i, "cx")
        cy = self._intrinsic(fr, i, "cy")
        cx = 0.5 * w if cx is None else cx
        cy = 0.5 * h if cy is None else cy
        if fx <= 0 or fy <= 0:
            raise self.fail(i, f"focal length is fl_x={fx}, fl_y={fy}", "positive focal lengths")
        return fx, fy, cx, cy, w, h

    def require(self, fr: Any, i: int) -> dict:
        if not isinstance(fr, dict):
            raise self.fail(i, f"is a {type(fr).__name__}", "a JSON object")
        for key in _REQUIRED_FRAME_KEYS:
            if key not in fr:
                raise self.fail(i, f"missing key {key!r}", f"VHAP frame keys {', '.join(_REQUIRED_FRAME_KEYS)}")
        for key in ("timestep_index", "camera_index"):
            v = fr[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise self.fail(i, f"key {key!r} is {v!r}", "a non-negative integer")
        for key in ("file_path", "flame_param_path", "fg_mask_path", "gt_mesh_path"):
            if key in fr and fr[key] is not None and (not isinstance(fr[key], str) or not fr[key]):
                raise self.fail(i, f"key {key!r} is {fr[key]!r}", "a relative file path")
        fr = dict(fr)
        for key in ("file_path", "flame_param_path", "fg_mask_path", "gt_mesh_path"):
            if fr.get(key):
                fr[key] = dataset_file(self.path.parent, fr[key], source=self.path, where=f"frame {i}: key {key!r}")
        cams = self.camera_list
        if cams is not None and fr["camera_index"] not in cams:
            raise self.fail(i, f"key 'camera_index' is {fr['camera_index']}, which is not in this file's "
                               f"'camera_indices' {sorted(cams)}", "one of the listed cameras")
        return fr

    @property
    def camera_list(self) -> set[int] | None:
        """The top-level ``camera_indices`` (None when the file has none)."""
        if not hasattr(self, "_cams"):
            c = self.top.get("camera_indices")
            if c is None:
                self._cams = None
            elif not isinstance(c, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in c):
                raise DataError(self.path, f"key 'camera_indices' is {c!r}", "a list of integer camera indices")
            else:
                self._cams = set(c)
        return self._cams

    def matrix(self, fr: dict, i: int) -> np.ndarray:
        try:
            m = np.asarray(fr["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            raise self.fail(i, "key 'transform_matrix' is not a numeric matrix", "a 4x4 list of numbers") from None
        if m.shape == (3, 4):
            m = np.concatenate([m, [[0.0, 0.0, 0.0, 1.0]]], axis=0)
        if m.shape != (4, 4):
            raise self.fail(i, f"key 'transform_matrix' has shape {m.shape}", "(4, 4)")
        if not np.isfinite(m).all():
            raise self.fail(i, "key 'transform_matrix' has non-finite values", "finite numbers")
        R = m[:3, :3]
        if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6) or not np.allclose(R @ R.T, np.eye(3), atol=1e-4) \
                or abs(abs(np.linalg.det(R)) - 1) > 1e-4:
            raise self.fail(i, "key 'transform_matrix' is not a rigid transform",
                            "an OpenGL camera-to-world matrix with an orthonormal rotation")
        return m


# --------------------------------------------------------------------------- ground-truth meshes
class GtMeshLoader:
    """timestep -> (V, 3) float32 ground-truth vertices from ``.npy`` files (synthetic subjects)."""

    def __init__(self, paths: dict[int, Path]):
        self.paths = paths

    def __call__(self, timestep: int) -> np.ndarray | None:
        path = self.paths.get(int(timestep))
        if path is None:
            return None
        return load_npy(path, "(V, 3) float vertices", ndim=2, last=3)


def load_npy(path: Path, expected: str, *, ndim: int, last: int, integer: bool = False) -> np.ndarray:
    """Load a ``.npy`` array of shape (N, last), with one-line errors."""
    if not Path(path).is_file():
        raise DataError(path, "file not found", expected)
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(path, f"unreadable .npy ({type(e).__name__})", expected) from None
    if a.ndim != ndim or a.shape[-1] != last:
        raise DataError(path, f"array has shape {a.shape}", expected)
    if integer:
        if not np.issubdtype(a.dtype, np.integer):
            raise DataError(path, f"array has dtype {a.dtype}", expected)
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.floating) or not np.isfinite(a).all():
        raise DataError(path, f"array has dtype {a.dtype} or non-finite values", expected)
    return a.astype(np.float32)


# --------------------------------------------------------------------------- the loader
def is_vhap_folder(path: str | Path) -> bool:
    """True when ``path`` looks like a VHAP export (``transforms_train.json`` or the canonical marker)."""
    p = Path(path)
    return (p / SPLIT_FILES["train"]).is_file() or (p / CANONICAL_FILE).is_file()


def load_vhap(path: str | Path, *, scale: float | None = None, splits: str = "vhap", name: str | None = None,
              background: tuple[float, float, float] = (1.0, 1.0, 1.0), n_shape: int = 300, n_expr: int = 100,
              verify_images: bool = False) -> Subject:
    """Load a VHAP folder (single sequence or UNION) as a :class:`Subject`.

    Args:
        path: the folder holding ``transforms_{train,val,test}.json``.
        scale: factor on the native resolution (``w, h`` of the JSON); None = native. Images are
            resampled and intrinsics scaled consistently (:meth:`Camera.scaled`).
        splits: ``"vhap"``: train / novel_view / self_reenact = transforms_train / val / test.
        name: subject name; default ``avatarbench_subject.json``'s ``name``, else the first
            ``_`` token of the sequence folder name (``306_EMO-1_...`` -> ``306``).
        background: RGB in [0, 1] that RGBA images are composited on (VHAP exports are white).
        n_shape, n_expr: expected FLAME ``shape`` / ``expr`` sizes.
        verify_images: also check that every image and mask file exists (otherwise lazily).

    Returns:
        Subject with ``kind="head"``, ``body_model="flame"``. ``Subject.cameras`` holds one camera
        per ``camera_index`` (its first occurrence, train split first); each ``Frame.camera`` is
        that frame's own camera, since VHAP recentres every sequence and so moves the cameras
        per sequence (``meta["cameras_vary_by_sequence"]``).

    Raises:
        DataError: missing/invalid files or fields (one line naming the file and field).
        ConfigError: unknown ``splits`` or a non-positive ``scale``.
    """
    if splits != "vhap":
        raise ConfigError(f"load_vhap: unknown splits {splits!r} (known: 'vhap')")
    if scale is not None and not (float(scale) > 0 and math.isfinite(float(scale))):
        raise ConfigError(f"load_vhap: scale must be a positive number, got {scale!r}")
    scale = None if scale is None or float(scale) == 1.0 else float(scale)
    root = Path(path)
    if not root.is_dir():
        raise DataError(root, "folder not found", "a VHAP folder with transforms_train.json")
    info = _read_subject_info(root)

    # ---- parse the three JSONs (cheap checks only) -------------------------------------------------
    records: dict[str, list[tuple]] = {}
    cam_cache: dict[tuple, Camera] = {}
    flame_paths: dict[str, Path] = {}          # 'flame_param_path' as written -> path, insertion order
    t_flame: dict[int, tuple[str, Path, int]] = {}  # timestep -> (flame key, json, frame index)
    gt_paths: dict[int, Path] = {}
    join = _PathJoiner(root)
    for split, fname in SPLIT_FILES.items():
        jpath = root / fname
        doc = read_json(jpath, "a VHAP transforms JSON (transforms_train/val/test.json)")
        parser = _FrameParser(jpath, doc)
        recs = []
        for i, fr in enumerate(parser.frames):
            fr = parser.require(fr, i)
            fx, fy, cx, cy, w, h = parser.intrinsics(fr, i)
            ci, t = fr["camera_index"], fr["timestep_index"]
            tm = fr["transform_matrix"]
            try:
                ckey = (ci, fx, fy, cx, cy, w, h, json.dumps(tm))
            except (TypeError, ValueError):
                raise parser.fail(i, "key 'transform_matrix' is not a numeric matrix",
                                  "a 4x4 list of numbers") from None
            cam = cam_cache.get(ckey)
            if cam is None:
                m = parser.matrix(fr, i)
                cam_name = str(fr.get("camera_id", "")) if fr.get("camera_id") is not None else ""
                cam = Camera.from_opengl_c2w(torch.from_numpy(m), fx, fy, cx, cy, w, h, id=ci, name=cam_name)
                cam.meta["native_size"] = (w, h)
                if scale is not None:
                    cam = cam.scaled(scale)
                cam_cache[ckey] = cam
            fkey = fr["flame_param_path"]
            prev = t_flame.get(t)
            if prev is None:
                t_flame[t] = (fkey, jpath, i)
                if fkey not in flame_paths:
                    flame_paths[fkey] = root / fkey
            elif prev[0] != fkey:
                raise parser.fail(i, f"timestep {t} has 'flame_param_path' {fr['flame_param_path']!r}, "
                                     f"but {prev[1].name} frame {prev[2]} gives {prev[0]!r}",
                                  "one FLAME file per timestep_index")
            if fr.get("gt_mesh_path"):
                gt_paths.setdefault(t, join(fr["gt_mesh_path"]))
            mask_rel = fr.get("fg_mask_path")
            recs.append((t, cam, join(fr["file_path"]), join(mask_rel) if mask_rel else None,
                         sequence_folder(fr["file_path"], root)))
        records[split] = recs

    # ---- existence of FLAME (and GT mesh) files ---------------------------------------------------
    for fkey, fpath in flame_paths.items():
        if not os.path.isfile(fpath):
            t = next(tt for tt, v in t_flame.items() if v[0] == fkey)
            _, jpath, i = t_flame[t]
            raise DataError(fpath, "FLAME parameter file not found",
                            f"the file named by 'flame_param_path' of {jpath.name} frame {i}")
    for t, p in gt_paths.items():
        if not p.is_file():
            raise DataError(p, "ground-truth mesh file not found", f"the file named by 'gt_mesh_path' of timestep {t}")

    # ---- subject and sequence names ---------------------------------------------------------------
    all_recs = [r for recs in records.values() for r in recs]
    if not records["train"]:
        raise DataError(root / SPLIT_FILES["train"], "no frames", "at least one training frame")
    folders = list(dict.fromkeys(r[4] for r in all_recs))
    subj = name or info.get("name") or subject_from_folder(folders[0])
    seq_of_folder = {f: sequence_from_folder(f, subj) for f in folders}
    seq_lists = {k: _read_lines(root / f) for k, f in SEQUENCE_FILES.items()}
    for lst in seq_lists.values():
        for f in lst or []:
            seq_of_folder.setdefault(f, sequence_from_folder(f, subj))

    # ---- FLAME parameters: the first file eagerly, the rest lazily (cached per timestep) -----------
    first_key = t_flame[records["train"][0][0]][0]
    first = read_flame_params(flame_paths[first_key], n_shape=n_shape, n_expr=n_expr)
    num_verts = first["static_offset"].shape[0] if "static_offset" in first else None
    lazies: dict[str, LazyParams] = {}
    for fkey, fpath in flame_paths.items():
        lazies[fkey] = LazyParams.from_file(fpath, n_shape=n_shape, n_expr=n_expr, num_verts=num_verts)
    lazies[first_key].prime(first)

    # ---- frames -----------------------------------------------------------------------------------
    bg = tuple(float(b) for b in background)
    frames: dict[str, list[Frame]] = {}
    t_seq: dict[int, str] = {}
    for split, recs in records.items():
        out = []
        for t, cam, img, mask, folder in recs:
            seq = seq_of_folder[folder]
            if t_seq.setdefault(t, seq) != seq:
                raise DataError(root / SPLIT_FILES[split],
                                f"timestep {t} belongs to sequences {t_seq[t]!r} and {seq!r}",
                                "globally unique timestep_index values")
            out.append(Frame(subject=subj, sequence=seq, timestep=t, camera=cam, image_path=img, mask_path=mask,
                             driving=lazies[t_flame[t][0]], background=bg))
        frames[split] = out
    if verify_images:
        for fl in frames.values():
            for f in fl:
                for p, what in ((f.image_path, "image"), (f.mask_path, "foreground mask")):
                    if p is not None and not p.is_file():
                        raise DataError(p, f"{what} file not found", f"the file of frame {f.key}")

    # ---- cameras: first occurrence per camera_index, train split first -----------------------------
    cameras: dict[int, Camera] = {}
    for split in SPLIT_FILES:
        for f in frames[split]:
            cameras.setdefault(f.camera.id, f.camera)
    cameras = dict(sorted(cameras.items()))
    per_index = {}
    for cam in cam_cache.values():
        per_index.setdefault(cam.id, set()).add(cam.world_to_cam.numpy().round(9).tobytes())
    vary = any(len(v) > 1 for v in per_index.values())

    # ---- canonical parameters, synthetic extras ---------------------------------------------------
    canonical: dict = {}
    meta: dict[str, Any] = {}
    cpath = root / CANONICAL_FILE
    if cpath.is_file():
        try:
            canonical = read_flame_params(cpath, n_shape=n_shape, n_expr=n_expr, num_verts=num_verts,
                                          required=("shape",))
        except DataError as e:
            meta["canonical_error"] = str(e)
    body_model_path = None
    if info.get("body_model_path"):
        body_model_path = root / dataset_file(root, info["body_model_path"], source=root / SUBJECT_FILE,
                                              where="key 'body_model_path'")
        if not body_model_path.is_file():
            raise DataError(root / SUBJECT_FILE, f"body_model_path {info['body_model_path']!r} does not exist",
                            "a path relative to the dataset folder")
    gt_loader = None
    if gt_paths:
        gt_loader = GtMeshLoader(gt_paths)
        first_gt = next(iter(gt_paths.values()))
        faces_path = first_gt.parent / "faces.npy"
        if not faces_path.is_file():
            faces_path = root / "gt_mesh" / "faces.npy"
        if faces_path.is_file():
            meta["gt_mesh_faces"] = load_npy(faces_path, "(F, 3) integer faces", ndim=2, last=3, integer=True)

    # ---- meta -------------------------------------------------------------------------------------
    sequences: dict[str, dict] = {}
    for split, fl in frames.items():
        for f in fl:
            d = sequences.setdefault(f.sequence, {"role": "test" if split == "self_reenact" else "trainval",
                                                  "timesteps": set()})
            d["timesteps"].add(f.timestep)
    folder_of_seq = {}
    for r in all_recs:
        folder_of_seq.setdefault(seq_of_folder[r[4]], r[4])
    seq_meta = {s: {"folder": folder_of_seq[s], "role": d["role"], "num_timesteps": len(d["timesteps"]),
                    "timestep_range": [min(d["timesteps"]), max(d["timesteps"])]} for s, d in sequences.items()}

    def _seqs(split: str, key: str) -> list[str]:
        lst = seq_lists[key]
        if lst is not None:
            return [seq_of_folder[f] for f in lst]
        return list(dict.fromkeys(f.sequence for f in frames[split]))

    w0, h0 = next(iter(cameras.values())).meta["native_size"]
    synthetic = bool(info.get("synthetic", False))
    meta.update({
        "format": "vhap",
        "dataset": info.get("dataset") or ("synthetic" if synthetic else "nersemble_vhap"),
        "synthetic": synthetic,
        "union": any(r[4] != root.name for r in all_recs),
        "scale": 1.0 if scale is None else scale,
        "native_size": [w0, h0],
        "train_cameras": sorted({f.camera.id for f in frames["train"]}),
        "novel_view_cameras": sorted({f.camera.id for f in frames["novel_view"]}),
        "trainval_sequences": _seqs("train", "trainval"),
        "test_sequences": _seqs("self_reenact", "test"),
        "sequences": seq_meta,
        "cameras_vary_by_sequence": vary,
        "num_flame_verts": num_verts,
    })
    return Subject(subj, "head", root, cameras, frames, body_model="flame", body_model_path=body_model_path,
                   background=bg, canonical=canonical, gt_mesh_loader=gt_loader, meta=meta)
