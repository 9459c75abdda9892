"""Named splits of the multi-view body datasets, and the Subject builder the body loaders share.

Split definitions follow Animatable Gaussians' configs and evaluation scripts (see
``/work/shared/reference/animatable_gaussians.md`` sections 2.2-2.4 and 8); where the paper has
no held-out camera or no held-out poses the corresponding split is empty, and avatarbench's own
choices are marked ``source="avatarbench"``.

Split names (see :mod:`avatarbench.data.subject`):

- ``train``         training cameras x training frames
- ``novel_view``    held-out camera(s) on training frames
- ``self_reenact``  held-out (novel) poses of the same subject on the test camera(s)
- ``paper_eval``    the paper's own evaluation images when they are none of the above (AvatarReX:
                    a training camera on training frames; ActorsHQ Actor01: likewise)
- ``cross_reenact`` built on demand by :func:`body_cross_frames` (target's cameras and betas,
                    driver's poses; no ground truth)

Camera indices are positions in the calibration file (JSON key order / CSV row order), the same
indexing as the ``used_cam_ids`` of Animatable Gaussians' configs.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from avatarbench.data.camera import Camera
from avatarbench.data.smpl_params import SmplxParams
from avatarbench.data.subject import Frame, Subject
from avatarbench.errors import ConfigError, DataError

SUBJECT_JSON = "avatarbench_subject.json"


@dataclass(frozen=True)
class BodySplitSpec:
    """Cameras and frames of each split of one body subject.

    Attributes:
        dataset: ``avatarrex`` | ``thuman4`` | ``actorshq`` | ``synthetic`` | ``custom``.
        subject: subject id within the dataset (``zzr``, ``subject00``, ``Actor01``, ...).
        train_cameras: camera indices used for training; None = every camera not held out.
        train_frames: training frame indices (``smpl_params.npz`` rows).
        novel_view_cameras: held-out camera indices (empty = no novel-view split).
        novel_view_frames: frames scored for novel-view synthesis (a subset of train_frames).
        self_reenact_cameras: test camera indices for the novel poses.
        novel_pose_frames: held-out frames with poses never seen in training.
        paper_eval_cameras / paper_eval_frames: the paper's evaluation images, when different.
        paper_eval_camera_names: paper-evaluation cameras given by their calibration name (serial),
            looked up in the calibration when the subject is built (the JSON key order of a
            re-saved calibration need not be the original one).
        template_frame: the frame the official template (``configs/<subject>/template.yaml``) is
            fitted on, when known; None otherwise.
        source: where the numbers come from (upstream config path or ``avatarbench``).
    """

    dataset: str
    subject: str
    train_cameras: tuple[int, ...] | None
    train_frames: Sequence[int]
    novel_view_cameras: tuple[int, ...] = ()
    novel_view_frames: Sequence[int] = ()
    self_reenact_cameras: tuple[int, ...] = ()
    novel_pose_frames: Sequence[int] = ()
    paper_eval_cameras: tuple[int, ...] = ()
    paper_eval_frames: Sequence[int] = ()
    paper_eval_camera_names: tuple[str, ...] = ()
    template_frame: int | None = None
    source: str = "avatarbench"
    notes: tuple[str, ...] = field(default=())

    def resolved_train_cameras(self, num_cameras: int) -> list[int]:
        if self.train_cameras is not None:
            return list(self.train_cameras)
        held = set(self.novel_view_cameras)
        return [i for i in range(num_cameras) if i not in held]

    def to_dict(self) -> dict:
        """JSON-friendly form (ranges written as ``"range(start, stop)"`` strings)."""
        def conv(v):
            if isinstance(v, range):
                return f"range({v.start}, {v.stop})" if v.step == 1 else f"range({v.start}, {v.stop}, {v.step})"
            return list(v) if isinstance(v, (tuple, list)) else v
        return {k: conv(v) for k, v in self.__dict__.items()}


# --------------------------------------------------------------------------------------------
# AvatarReX (16 cameras): configs/avatarrex_*/avatar.yaml use_cam_ids drop 7 and 13; all frames
# train. Paper Tab. 2 evaluates camera 22010710 (a training view, looked up by serial), frames
# [0, 500) (inferred, UNVERIFIED). avatarbench's novel_view uses the two cameras the configs hold out.
_AVATARREX_TRAIN_CAMS = (0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 14, 15)
_AVATARREX_FRAMES = {"zzr": 2001, "lbn1": 1901, "lbn2": 1871, "zxc": 1801}
_AVATARREX_TEST_SERIAL = "22010710"

# The frame each official template is fitted on (configs/<subject>/template.yaml frame_range[0]).
OFFICIAL_TEMPLATE_FRAMES = {("avatarrex", "zzr"): 0, ("avatarrex", "lbn1"): 1033, ("actorshq", "Actor01"): 48,
                            ("actorshq", "Actor04"): 294, ("thuman4", "subject02"): 54}

# THuman4.0 (24 cameras): configs/subject0*/avatar.yaml; eval/comparison_body_only_avatars.py
# tests subject00 on cam18 over frames [2000, 2500) (novel poses).
_THUMAN4 = {
    "subject00": dict(train_cameras=tuple(i for i in range(24) if i != 7), train_frames=range(0, 2000),
                      novel_view_cameras=(7,), novel_view_frames=range(0, 500),
                      self_reenact_cameras=(18,), novel_pose_frames=range(2000, 2500),
                      source="configs/subject00/avatar.yaml; eval/comparison_body_only_avatars.py"),
    "subject01": dict(train_cameras=tuple(i for i in range(24) if i != 7), train_frames=range(0, 2500),
                      novel_view_cameras=(7,), novel_view_frames=range(0, 500),
                      source="configs/subject01/avatar.yaml"),
    "subject02": dict(train_cameras=tuple(range(24)), train_frames=range(385, 2500),
                      source="configs/subject02/avatar.yaml",
                      notes=("all 24 cameras train and all frames from 385 on: no held-out camera or pose",)),
}

# ActorsHQ (160 cameras, 4x = 747 x 1021): configs/actor0*/avatar.yaml.
_ACTORSHQ_TRAIN_CAMS = (4, 5, 6, 7, 20, 21, 22, 23, 36, 37, 38, 39, 52, 53, 54, 55, 76, 77, 78, 79, 92, 93, 94,
                        95, 108, 109, 110, 111, 125, 126, 127, 130, 131, 134, 135, 138, 139, 142, 143, 146, 147,
                        150, 151, 154, 155, 158, 159)
_ACTORSHQ_FRAMES = {"Actor01": (48, 2177), "Actor02": (60, 2157), "Actor04": (77, 1378), "Actor05": (100, 1086),
                    "Actor07": (205, 2139), "Actor08": (63, 2374)}


def _avatarrex_spec(subject: str) -> BodySplitSpec | None:
    key = next((k for k in _AVATARREX_FRAMES if re.search(rf"(^|[_\-]){k}$", subject)), None)
    if key is None:
        return None
    return BodySplitSpec(
        dataset="avatarrex", subject=key, train_cameras=_AVATARREX_TRAIN_CAMS,
        train_frames=range(0, _AVATARREX_FRAMES[key]), novel_view_cameras=(7, 13), novel_view_frames=range(0, 500),
        paper_eval_camera_names=(_AVATARREX_TEST_SERIAL,), paper_eval_frames=range(0, 500),
        template_frame=OFFICIAL_TEMPLATE_FRAMES.get(("avatarrex", key)),
        source=(f"configs/avatarrex_{key}/avatar.yaml" if key != "zxc" else "avatarbench (no upstream config for zxc)"),
        notes=("paper_eval: camera 22010710 (by serial; a training view) on frames [0, 500): inferred, UNVERIFIED",
               "novel_view uses the cameras the configs leave out (indices 7 and 13): avatarbench choice",
               "no held-out poses: every frame trains (self_reenact is empty)"))


def _actorshq_spec(subject: str, root: Path | None) -> BodySplitSpec | None:
    m = re.search(r"actor0?(\d+)", subject, re.IGNORECASE)
    if m is None:
        return None
    actor = f"Actor{int(m.group(1)):02d}"
    cams = tuple(c for c in _ACTORSHQ_TRAIN_CAMS if not (actor == "Actor01" and c == 127))
    notes: list[str] = []
    frames: Sequence[int] | None = None
    if actor in _ACTORSHQ_FRAMES:
        frames = range(*_ACTORSHQ_FRAMES[actor])
        source = f"configs/{actor.lower()}/avatar.yaml"
    else:
        ids_file = (root / "frame_ids.txt") if root is not None else None
        if ids_file is not None and ids_file.exists():
            frames = tuple(int(x) for x in np.loadtxt(ids_file, dtype=np.int64).reshape(-1))
            source = f"configs/{actor.lower()}/avatar.yaml (frame_ids.txt)"
        else:
            source = "avatarbench (no upstream frame range)"
            notes.append("no frame range known for this actor: every frame trains")
    if actor == "Actor01":
        nv_cam, nv_frames = (127,), range(48, 548)
        notes.append("novel_view: Cam128 (index 127, held out for Actor01; used by a user reproduction, issue #48)")
        paper = dict(paper_eval_cameras=(126,), paper_eval_frames=range(48, 548))
        notes.append("paper_eval: Cam127 (index 126, a training view) frames 48-548 at 4x (issue #29)")
    else:
        nv_cam, nv_frames = (128,), None
        paper = {}
        notes.append("novel_view: Cam129 (index 128, not in the training list): avatarbench choice")
    return BodySplitSpec(dataset="actorshq", subject=actor, train_cameras=cams,
                         train_frames=frames if frames is not None else (),
                         novel_view_cameras=nv_cam, novel_view_frames=nv_frames if nv_frames is not None else (),
                         template_frame=OFFICIAL_TEMPLATE_FRAMES.get(("actorshq", actor)), source=source, notes=tuple(notes + ["no held-out poses (self_reenact is empty)"]), **paper)


def default_body_split(dataset: str, subject: str, num_cameras: int, num_frames: int) -> BodySplitSpec:
    """avatarbench's rule for subjects without an upstream split.

    The last camera is held out (novel view, also the self-reenactment camera), the first 80 % of
    frames train and the last 20 % are novel poses; novel-view frames are the first (up to) 500
    training frames.
    """
    n_train = max(1, int(round(num_frames * 0.8))) if num_frames > 1 else num_frames
    test_cam = (num_cameras - 1,) if num_cameras > 1 else ()
    return BodySplitSpec(dataset=dataset, subject=subject, train_cameras=None, train_frames=range(0, n_train),
                         novel_view_cameras=test_cam, novel_view_frames=range(0, min(n_train, 500)),
                         self_reenact_cameras=test_cam, novel_pose_frames=range(n_train, num_frames),
                         source="avatarbench (default rule)")


def body_split_spec(dataset: str, subject: str, num_cameras: int, num_frames: int,
                    root: Path | None = None) -> BodySplitSpec:
    """The split of a known subject (by dataset and folder name), else :func:`default_body_split`.

    Args:
        dataset: ``avatarrex`` | ``thuman4`` | ``actorshq``.
        subject: the subject's folder name (``avatarrex_zzr``, ``subject00``, ``Actor01``).
    """
    spec: BodySplitSpec | None = None
    if dataset == "avatarrex":
        spec = _avatarrex_spec(subject)
    elif dataset == "thuman4":
        m = re.search(r"subject0*(\d+)", subject)
        key = f"subject{int(m.group(1)):02d}" if m else None
        if key in _THUMAN4:
            spec = BodySplitSpec(dataset="thuman4", subject=key,
                                 template_frame=OFFICIAL_TEMPLATE_FRAMES.get(("thuman4", key)), **_THUMAN4[key])
    elif dataset == "actorshq":
        spec = _actorshq_spec(subject, root)
        if spec is not None and len(spec.train_frames) == 0:
            spec = replace(spec, train_frames=range(0, num_frames),
                           novel_view_frames=range(0, min(num_frames, 500)))
        elif spec is not None and len(spec.novel_view_frames) == 0:
            spec = replace(spec, novel_view_frames=list(spec.train_frames)[:500])
    if spec is None:
        return default_body_split(dataset, subject, num_cameras, num_frames)
    return spec


def split_spec_from_json(data: dict, path: Path, dataset: str, subject: str, num_cameras: int,
                         num_frames: int, cam_names: list[str]) -> BodySplitSpec:
    """A split read from the ``splits`` node of ``avatarbench_subject.json``.

    Format (cameras as indices or calibration names; frames as lists or ``[start, stop]`` ranges
    under ``frame_range``)::

        {"train":        {"cameras": [0, 1, ...], "frames": [0, 1, ...]},
         "novel_view":   {"cameras": [9], "frames": [...]},
         "self_reenact": {"cameras": [9], "frames": [...]}}
    """
    def cams(node: dict, key: str) -> tuple[int, ...]:
        out = []
        for c in node.get("cameras", []):
            if isinstance(c, str) and c in cam_names:
                out.append(cam_names.index(c))
            elif isinstance(c, int) and 0 <= c < num_cameras:
                out.append(c)
            else:
                raise DataError(path, f"splits.{key}.cameras has unknown camera {c!r}",
                                f"an index < {num_cameras} or one of the calibration names")
        return tuple(out)

    def frames(node: dict, key: str) -> Sequence[int]:
        if "frame_range" in node:
            r = node["frame_range"]
            if not (isinstance(r, list) and len(r) in (2, 3) and all(isinstance(x, int) for x in r)):
                raise DataError(path, f"splits.{key}.frame_range is {r!r}", "[start, stop] or [start, stop, step]")
            return range(*r)
        fr = node.get("frames", [])
        if not all(isinstance(x, int) for x in fr):
            raise DataError(path, f"splits.{key}.frames is not a list of integers", "frame indices")
        return list(fr)

    if not isinstance(data, dict) or "train" not in data:
        raise DataError(path, "'splits' has no 'train' entry", "splits.train.{cameras, frames}")
    tr = data["train"]
    nv = data.get("novel_view", {})
    sr = data.get("self_reenact", {})
    return BodySplitSpec(dataset=dataset, subject=subject,
                         train_cameras=cams(tr, "train") or None, train_frames=frames(tr, "train"),
                         novel_view_cameras=cams(nv, "novel_view"), novel_view_frames=frames(nv, "novel_view"),
                         self_reenact_cameras=cams(sr, "self_reenact"),
                         novel_pose_frames=frames(sr, "self_reenact"), source=str(path))


# --------------------------------------------------------------------------------------------
def read_missing_list(path: Path, cam_names: list[str]) -> set[tuple[int, int]]:
    """Parse ``missing_img_files.txt``: one image path per line (``cam00/00000123.jpg``,
    ``images\\cam00\\00000123.jpg``, ...). Returns ``{(frame, camera_index)}``.

    The camera is the name of the image's parent folder; lines naming an unknown camera or a
    non-numeric file name raise :class:`DataError`.
    """
    out: set[tuple[int, int]] = set()
    if not path.exists():
        return out
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip().replace("\\", "/")
        if not line:
            continue
        parts = line.split("/")
        stem = os.path.splitext(parts[-1])[0]
        cam = parts[-2] if len(parts) >= 2 else ""
        if cam == "pha" and len(parts) >= 4:  # a mask path <cam>/mask/pha/x.jpg
            cam = parts[-4]
        m = re.search(r"(\d+)$", stem)
        if cam not in cam_names or m is None:
            raise DataError(path, f"line {lineno} {line!r} names no known camera/frame",
                            "'<camera>/<frame>.jpg' with a camera from the calibration")
        out.add((int(m.group(1)), cam_names.index(cam)))
    return out


@dataclass
class BodyLayout:
    """Where one dataset keeps its files (what differs between the three loaders).

    Attributes:
        dataset: dataset id written to ``Subject.meta['dataset']``.
        image_path: (camera index, frame) -> image path.
        mask_path: (camera index, frame) -> mask path.
        list_dir: camera index -> (image folder, mask folder), listed once to find missing files.
    """

    dataset: str
    image_path: Callable[[int, int], Path]
    mask_path: Callable[[int, int], Path]
    list_dirs: Callable[[int], tuple[Path, Path]]


class GtMeshLoader:
    """Picklable ``timestep -> (V, 3) float32`` reader of ``gt_mesh/%08d.npy`` (None if absent)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def __call__(self, t: int) -> np.ndarray | None:
        p = self.folder / f"{int(t):08d}.npy"
        return np.load(p, allow_pickle=False) if p.exists() else None


def _clip(frames: Sequence[int], n: int) -> list[int]:
    return [int(t) for t in frames if 0 <= int(t) < n]


def build_body_subject(*, root: Path, name: str, layout: BodyLayout, cameras: list[Camera],
                       params: SmplxParams, spec: BodySplitSpec, missing: set[tuple[int, int]],
                       scale: float | None, body_model_path: Path | None = None,
                       gt_mesh_dir: Path | None = None, extra_meta: dict | None = None) -> Subject:
    """Assemble a body :class:`Subject` from calibrated cameras, parameters and a split.

    Frames whose image or mask file is absent (or listed in ``missing``) are skipped and counted
    in ``meta['skipped_frames']``; a split camera with none of its images raises DataError.
    Frame indices beyond the parameter file are dropped (``meta['clipped_frames']``).
    """
    n_cam, n_frames = len(cameras), params.num_frames
    for c in cameras:  # the files' size: images of another size raise DataError when read
        c.meta["native_size"] = (c.width, c.height)
    if scale is not None and float(scale) != 1.0:
        if not float(scale) > 0:
            raise ConfigError(f"data.scale must be > 0, got {scale}")
        cameras = [c.scaled(float(scale)) for c in cameras]
    cam_by_id = {c.id: c for c in cameras}
    paper_cams = list(spec.paper_eval_cameras)
    by_name = {c.name: c.id for c in cameras}
    for n in spec.paper_eval_camera_names:
        if n not in by_name:
            raise DataError(root, f"split 'paper_eval' uses camera {n!r}, which the calibration does not have",
                            f"one of {sorted(by_name)[:4]}...")
        paper_cams.append(by_name[n])

    plan: dict[str, tuple[list[int], list[int]]] = {
        "train": (spec.resolved_train_cameras(n_cam), _clip(spec.train_frames, n_frames)),
        "novel_view": (list(spec.novel_view_cameras), _clip(spec.novel_view_frames, n_frames)),
        "self_reenact": (list(spec.self_reenact_cameras), _clip(spec.novel_pose_frames, n_frames)),
        "paper_eval": (paper_cams, _clip(spec.paper_eval_frames, n_frames)),
    }
    for split, (cams, _) in plan.items():
        bad = [c for c in cams if not 0 <= c < n_cam]
        if bad:
            raise DataError(root, f"split {split!r} uses camera index {bad[0]} but the calibration has {n_cam} cameras",
                            f"indices < {n_cam}")

    # list each used camera folder once: skipping absent files costs one listdir per camera
    present: dict[int, tuple[set[str], set[str]]] = {}
    used_cams = sorted({c for cams, fr in plan.values() if fr for c in cams})
    for c in used_cams:
        img_dir, mask_dir = layout.list_dirs(c)
        imgs = set(os.listdir(img_dir)) if img_dir.is_dir() else set()
        masks = set(os.listdir(mask_dir)) if mask_dir.is_dir() else set()
        present[c] = (imgs, masks)

    driving_cache: dict[int, dict[str, np.ndarray]] = {}

    def driving(t: int) -> dict[str, np.ndarray]:
        if t not in driving_cache:
            driving_cache[t] = params.frame(t)
        return driving_cache[t]

    seq = name
    skipped = 0
    splits: dict[str, list[Frame]] = {}
    for split, (cams, frames) in plan.items():
        out: list[Frame] = []
        for c in cams:
            imgs, masks = present.get(c, (set(), set()))
            n_before = len(out)
            for t in frames:
                ip, mp = layout.image_path(c, t), layout.mask_path(c, t)
                if (t, c) in missing or ip.name not in imgs or mp.name not in masks:
                    skipped += 1
                    continue
                out.append(Frame(subject=name, sequence=seq, timestep=t, camera=cam_by_id[c], image_path=ip,
                                 mask_path=mp, driving=driving(t), meta={"composite_with_mask": True}))
            if frames and len(out) == n_before:
                ip, mp = layout.image_path(c, frames[0]), layout.mask_path(c, frames[0])
                what = ip if ip.name not in imgs else mp
                raise DataError(what, f"camera {cameras[c].name!r} has none of the {len(frames)} {split} "
                                      f"frames ({frames[0]}..{frames[-1]})", "images and masks in the dataset layout")
        out.sort(key=lambda f: (f.timestep, f.camera.id))
        splits[split] = out
    if not splits["paper_eval"]:
        del splits["paper_eval"]
    splits["cross_reenact"] = []

    n_clipped = sum(len(list(getattr(spec, k))) - len(_clip(getattr(spec, k), n_frames))
                    for k in ("train_frames", "novel_view_frames", "novel_pose_frames"))
    gt_loader = None
    meta = {"dataset": layout.dataset, "source_format": layout.dataset, "scale": float(scale or 1.0),
            "split_spec": spec.to_dict(), "skipped_frames": skipped, "clipped_frames": n_clipped,
            "num_smpl_frames": n_frames, "betas": params.betas.tolist(),
            "camera_names": [c.name for c in sorted(cameras, key=lambda c: c.id)]}
    if gt_mesh_dir is not None and gt_mesh_dir.is_dir():
        faces_file = gt_mesh_dir / "faces.npy"
        if faces_file.exists():
            meta["gt_mesh_faces"] = np.load(faces_file, allow_pickle=False)
        gt_loader = GtMeshLoader(gt_mesh_dir)
    for k, v in (extra_meta or {}).items():
        meta.setdefault(k, v)
    return Subject(name, "body", root, cam_by_id, splits, body_model="smplx", body_model_path=body_model_path,
                   background=(1.0, 1.0, 1.0), canonical={"betas": params.betas}, gt_mesh_loader=gt_loader,
                   meta=meta)


def read_subject_json(root: Path) -> dict | None:
    """``avatarbench_subject.json`` of a folder (synthetic subjects and user overrides), or None."""
    p = root / SUBJECT_JSON
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(p, f"invalid JSON ({e.msg} at line {e.lineno})", "a JSON object") from None
    if not isinstance(data, dict):
        raise DataError(p, "top level is not an object", "a JSON object")
    return data


# --------------------------------------------------------------------------------------------
def _rotvec_to_mat(v: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.asarray(v, np.float64).reshape(-1, 3)).as_matrix()


def _mat_to_rotvec(m: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(m).as_rotvec()


def body_cross_frames(target: Subject, driver: Subject, *, driver_split: str = "self_reenact",
                      cameras: Sequence[int] | None = None, root: str = "align",
                      max_frames: int | None = None) -> list[Frame]:
    """Cross-reenactment frames: the target's cameras and shape, the driver's poses.

    Args:
        target: the avatar's subject (its betas and cameras are kept).
        driver: the subject whose motion drives it.
        driver_split: the driver's split whose timesteps are used, ``"all"``, or a sequence name
            of the driver; falls back to the driver's ``train`` split when that selects nothing
            (AvatarReX/ActorsHQ hold out no poses).
        cameras: target camera indices; default the target's test cameras (``self_reenact`` or
            ``novel_view`` cameras), else its first training camera.
        root: ``"align"`` re-expresses the driver's root motion relative to its first frame,
            starting from the target's first training frame (the two captures' world frames
            differ); ``"keep"`` copies ``global_orient``/``transl`` unchanged.
        max_frames: keep at most this many driver timesteps (evenly spaced).

    Returns:
        Frames with ``image_path=None``, ``driver=driver.name``, ``sequence=driver.name``; the
        driving dicts hold the target's ``betas`` and the driver's everything else.
    """
    if root not in ("align", "keep"):
        raise ConfigError(f"body_cross_frames: root must be 'align' or 'keep', got {root!r}")
    if driver_split == "all":
        drv_frames = [f for sp in driver.split_names for f in driver.frames(sp)]
    elif driver_split in driver.split_names:
        drv_frames = driver.frames(driver_split)
    else:  # a sequence name of the driver, else nothing (then its training motion)
        drv_frames = [f for sp in driver.split_names for f in driver.frames(sp) if f.sequence == driver_split]
    if not drv_frames:
        drv_frames = driver.frames("train")
    ts = sorted({f.timestep for f in drv_frames})
    if max_frames is not None and len(ts) > max_frames > 0:
        ts = [ts[int(i)] for i in np.linspace(0, len(ts) - 1, max_frames).round().astype(int)]
    if cameras is None:
        cam_ids = sorted({f.camera.id for s in ("self_reenact", "novel_view") if s in target.split_names
                          for f in target.frames(s)})
        if not cam_ids:
            cam_ids = [target.frames("train")[0].camera.id]
    else:
        cam_ids = list(cameras)
    missing = [c for c in cam_ids if c not in target.cameras]
    if missing:
        raise ConfigError(f"target {target.name!r} has no camera {missing[0]}")
    tgt_train = target.frames("train")
    tgt_ref = tgt_train[0].driving if tgt_train else None
    betas = np.asarray(target.canonical.get("betas", tgt_ref["betas"] if tgt_ref else np.zeros(10)), np.float32)

    if root == "align" and tgt_ref is not None:
        d0 = driver.driving(ts[0])
        R_align = _rotvec_to_mat(tgt_ref["global_orient"])[0] @ _rotvec_to_mat(d0["global_orient"])[0].T
    else:
        R_align = None

    out: list[Frame] = []
    for t in ts:
        d = dict(driver.driving(t))
        d["betas"] = betas
        if R_align is not None:
            d0 = driver.driving(ts[0])
            d["global_orient"] = _mat_to_rotvec(R_align @ _rotvec_to_mat(d["global_orient"])[0]).astype(np.float32)
            d["transl"] = (R_align @ (np.asarray(d["transl"], np.float64) - d0["transl"])
                           + tgt_ref["transl"]).astype(np.float32)
        for c in cam_ids:
            out.append(Frame(subject=target.name, sequence=driver.name, timestep=t, camera=target.cameras[c],
                             image_path=None, mask_path=None, driving=d, background=target.background,
                             driver=driver.name))
    return out
