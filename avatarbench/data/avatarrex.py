"""AvatarReX loader (and the synthetic body subjects, which use its layout).

Layout of one subject folder (``AVATARREX_DATASET.md`` + Animatable Gaussians'
``MvRgbDatasetAvatarReX``)::

    <subject>/
      calibration_full.json            {"<serial>": {"K", "R", "T", "imgSize"}, ...}
      smpl_params.npz                  SMPL-X fits (see avatarbench.data.smpl_params)
      missing_img_files.txt            optional: "<serial>/%08d.jpg" lines to skip
      <serial>/%08d.jpg                RGB images
      <serial>/mask/pha/%08d.jpg       alpha mattes (BackgroundMattingV2)
      avatarbench_subject.json         optional, avatarbench's own: name, splits, body model, ...

Calibration: per camera ``K`` (3x3, pixels), ``R`` (3x3) and ``T`` (3,) with
``x_cam = R @ x_world + T`` (world-to-camera, OpenCV axes) and ``imgSize = [width, height]``.
The camera index is the JSON key order (the ``used_cam_ids`` of the upstream configs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from avatarbench.data.body_splits import (BodyLayout, body_split_spec, build_body_subject, read_missing_list,
                                          read_subject_json, split_spec_from_json)
from avatarbench.data.camera import Camera
from avatarbench.data.smpl_params import load_smplx_params
from avatarbench.data.subject import Subject
from avatarbench.errors import DataError

CALIBRATION_FILE = "calibration_full.json"


def _matrix(entry: dict, key: str, shape: tuple[int, ...], path: Path, cam: str) -> np.ndarray:
    if key not in entry:
        raise DataError(path, f"camera {cam!r} has no key {key!r}", "K, R, T and imgSize per camera")
    try:
        a = np.asarray(entry[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(path, f"camera {cam!r} key {key!r} is not numeric", f"numbers of shape {shape}") from None
    if a.size != int(np.prod(shape)) or not np.isfinite(a).all():
        raise DataError(path, f"camera {cam!r} key {key!r} has shape {a.shape}", f"{shape} finite numbers")
    return a.reshape(shape)


def camera_from_krt(entry: dict, path: Path, name: str, index: int) -> Camera:
    """One camera from a ``{"K", "R", "T", "imgSize"}`` calibration entry (AvatarReX/THuman4.0).

    Raises:
        DataError: missing keys, wrong sizes, a non-rotation ``R`` or a bad ``imgSize``.
    """
    if not isinstance(entry, dict):
        raise DataError(path, f"camera {name!r} is not an object", "{K, R, T, imgSize}")
    K = _matrix(entry, "K", (3, 3), path, name)
    R = _matrix(entry, "R", (3, 3), path, name)
    T = _matrix(entry, "T", (3,), path, name)
    size = _matrix(entry, "imgSize", (2,), path, name)
    if abs(np.linalg.det(R) - 1.0) > 1e-3 or np.abs(R @ R.T - np.eye(3)).max() > 1e-3:
        raise DataError(path, f"camera {name!r} key 'R' is not a rotation (det {np.linalg.det(R):.4f})",
                        "an orthonormal 3x3 world-to-camera rotation")
    if (size <= 0).any() or (size != np.round(size)).any():
        raise DataError(path, f"camera {name!r} key 'imgSize' is {size.tolist()}", "[width, height] positive integers")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise DataError(path, f"camera {name!r} key 'K' has non-positive focal length", "fx, fy > 0")
    w2c = np.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = T
    return Camera(K=K, world_to_cam=w2c, width=int(size[0]), height=int(size[1]), id=index, name=name)


def read_krt_calibration(path: str | Path, names: list[str] | None = None) -> list[Camera]:
    """Read a JSON calibration keyed by camera name (AvatarReX ``calibration_full.json``,
    THuman4.0 ``calibration.json``).

    Args:
        names: the camera keys in index order; None = the JSON key order.

    Returns:
        Cameras with ``id`` = index and ``name`` = JSON key.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "calibration file not found", "a JSON calibration next to smpl_params.npz")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON ({e.msg} at line {e.lineno})", "a JSON object keyed by camera") from None
    if not isinstance(data, dict) or not data:
        raise DataError(path, "calibration is empty or not an object", "a JSON object keyed by camera")
    names = list(data) if names is None else names
    for n in names:
        if n not in data:
            raise DataError(path, f"no camera {n!r}", f"keys {names[0]}..{names[-1]}")
    return [camera_from_krt(data[n], path, n, i) for i, n in enumerate(names)]


def _resolve_body_model_path(root: Path, info: dict | None) -> Path | None:
    if not info or not info.get("body_model_path"):
        return None
    p = Path(info["body_model_path"])
    p = p if p.is_absolute() else root / p
    if not p.exists() and info.get("body_model") == "smplx_synthetic":
        from avatarbench.bodymodels.smplx_synthetic import ensure_synthetic_smplx

        p = ensure_synthetic_smplx()  # the deterministic stand-in, regenerated in this cache
    return p


def load_avatarrex(path: str | Path, scale: float | None = None) -> Subject:
    """Load an AvatarReX subject folder (or a synthetic body subject in the same layout).

    Args:
        path: the subject folder (holding ``calibration_full.json``).
        scale: resolution factor applied to the native image size (None = 1).

    Returns:
        A ``kind='body'`` :class:`Subject` with splits ``train``, ``novel_view``,
        ``self_reenact`` (empty when the paper holds out no poses), ``paper_eval`` (when the paper
        evaluates other images) and an empty ``cross_reenact`` (see
        :func:`avatarbench.data.body_splits.body_cross_frames`).
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(root, "subject folder not found", "an AvatarReX subject folder")
    cameras = read_krt_calibration(root / CALIBRATION_FILE)
    from avatarbench.data.safe_paths import safe_component

    names = [safe_component(c.name, source=root / CALIBRATION_FILE, what="camera name") for c in cameras]
    params = load_smplx_params(root / "smpl_params.npz")
    info = read_subject_json(root)
    name = str(info.get("name", root.name)) if info else root.name
    image_ext = str(info.get("image_ext", "jpg")) if info else "jpg"
    mask_ext = str(info.get("mask_ext", "jpg")) if info else "jpg"
    if info and "splits" in info:
        spec = split_spec_from_json(info["splits"], root / "avatarbench_subject.json",
                                    "synthetic" if info.get("synthetic") else "avatarrex", name,
                                    len(cameras), params.num_frames, names)
    else:
        spec = body_split_spec("avatarrex", root.name, len(cameras), params.num_frames, root)
    layout = BodyLayout(
        dataset="synthetic_body" if info and info.get("synthetic") else "avatarrex",
        image_path=lambda c, t: root / names[c] / f"{t:08d}.{image_ext}",
        mask_path=lambda c, t: root / names[c] / "mask" / "pha" / f"{t:08d}.{mask_ext}",
        list_dirs=lambda c: (root / names[c], root / names[c] / "mask" / "pha"),
    )
    missing = read_missing_list(root / "missing_img_files.txt", names)
    extra = {}
    if info:
        extra = {k: v for k, v in info.items() if k not in ("splits",) and isinstance(v, (str, int, float, bool, list))}
    return build_body_subject(root=root, name=name, layout=layout, cameras=cameras, params=params, spec=spec,
                              missing=missing, scale=scale, body_model_path=_resolve_body_model_path(root, info),
                              gt_mesh_dir=root / "gt_mesh", extra_meta=extra)
