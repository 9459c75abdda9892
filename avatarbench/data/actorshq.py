"""ActorsHQ loader (``Sequence1`` of each actor, at the "4x" resolution, 747 x 1021).

Layout (Animatable Gaussians' ``MvRgbDatasetActorsHQ``)::

    ActorsHQ/Actor01/Sequence1/
      smpl_params.npz                          SMPL-X fits (from the AG authors' Google Drive)
      frame_ids.txt                            optional (Actor06's training frames)
      4x/calibration.csv                       name,w,h,rx,ry,rz,tx,ty,tz,fx,fy,px,py
      4x/rgbs/<Cam>/<Cam>_rgb%06d.jpg
      4x/masks/<Cam>/<Cam>_mask%06d.png

Calibration: ``(rx, ry, rz)`` is a Rodrigues rotation vector and ``(tx, ty, tz)`` a translation;
together they are the camera-to-WORLD pose (OpenCV axes), inverted here to world-to-camera.
Intrinsics are normalised: ``fx, px`` by the width ``w`` and ``fy, py`` by the height ``h``.
The camera index is the CSV row order (``Cam001`` = index 0).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from avatarbench.data.body_splits import (BodyLayout, body_split_spec, build_body_subject, read_missing_list,
                                          read_subject_json, split_spec_from_json)
from avatarbench.data.camera import Camera
from avatarbench.data.smpl_params import load_smplx_params
from avatarbench.data.subject import Subject
from avatarbench.errors import DataError

RESOLUTION = "4x"
CSV_COLUMNS = ("name", "w", "h", "rx", "ry", "rz", "tx", "ty", "tz", "fx", "fy", "px", "py")


def _rodrigues(r: np.ndarray) -> np.ndarray:
    """(3,) rotation vector -> (3, 3) matrix (float64)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(r).as_matrix()


def read_actorshq_calibration(path: str | Path) -> list[Camera]:
    """Read ``calibration.csv`` (see the module docstring for the conventions).

    Raises:
        DataError: missing file/columns, non-numeric or non-positive values.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "calibration file not found", f"<sequence>/{RESOLUTION}/calibration.csv")
    cams: list[Camera] = []
    with open(path, newline="", encoding="utf-8") as fp:
        reader = csv.DictReader(fp)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in CSV_COLUMNS if c not in cols]
        if missing:
            raise DataError(path, f"missing column(s) {', '.join(missing)}", "header " + ",".join(CSV_COLUMNS))
        for i, row in enumerate(reader):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            name = row["name"]
            try:
                vals = {k: float(row[k]) for k in CSV_COLUMNS[1:]}
            except ValueError:
                bad = next(k for k in CSV_COLUMNS[1:] if not _is_float(row[k]))
                raise DataError(path, f"row {i + 2} ({name}) column {bad!r} is {row[bad]!r}", "a number") from None
            w, h = vals["w"], vals["h"]
            if w <= 0 or h <= 0 or w != round(w) or h != round(h):
                raise DataError(path, f"row {i + 2} ({name}) has image size {w} x {h}", "positive integer w, h")
            if vals["fx"] <= 0 or vals["fy"] <= 0:
                raise DataError(path, f"row {i + 2} ({name}) has non-positive focal length", "fx, fy > 0 (normalised)")
            c2w = np.eye(4)
            c2w[:3, :3] = _rodrigues(np.array([vals["rx"], vals["ry"], vals["rz"]]))
            c2w[:3, 3] = [vals["tx"], vals["ty"], vals["tz"]]
            cams.append(Camera.from_opencv_c2w(c2w, vals["fx"] * w, vals["fy"] * h, vals["px"] * w, vals["py"] * h,
                                               int(w), int(h), id=i, name=name))
    if not cams:
        raise DataError(path, "no camera rows", "one row per camera")
    return cams


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _sequence_root(path: Path) -> Path:
    """Accept ``.../Sequence1`` or ``.../Sequence1/4x``."""
    if path.name == RESOLUTION and (path / "calibration.csv").exists():
        return path.parent
    return path


def load_actorshq(path: str | Path, scale: float | None = None) -> Subject:
    """Load an ActorsHQ sequence (``ActorsHQ/Actor0X/Sequence1``).

    Args:
        path: the sequence folder (holding ``4x/`` and ``smpl_params.npz``).
        scale: resolution factor applied to the 4x images (None = 1).

    Returns:
        A ``kind='body'`` :class:`Subject` named after the actor (``Actor01``), with splits from
        :mod:`avatarbench.data.body_splits` (47 training cameras, actor-specific frame range).
    """
    root = _sequence_root(Path(path))
    if not root.is_dir():
        raise DataError(root, "sequence folder not found", "ActorsHQ/Actor0X/Sequence1")
    res = root / RESOLUTION
    cameras = read_actorshq_calibration(res / "calibration.csv")
    from avatarbench.data.safe_paths import safe_component

    names = [safe_component(c.name, source=res / "calibration.csv", what="camera name") for c in cameras]
    params = load_smplx_params(root / "smpl_params.npz")
    actor = root.parent.name if root.name.lower().startswith("sequence") else root.name
    info = read_subject_json(root)
    if info and "splits" in info:
        spec = split_spec_from_json(info["splits"], root / "avatarbench_subject.json", "actorshq", actor,
                                    len(cameras), params.num_frames, names)
    else:
        spec = body_split_spec("actorshq", actor, len(cameras), params.num_frames, root)
    layout = BodyLayout(
        dataset="actorshq",
        image_path=lambda c, t: res / "rgbs" / names[c] / f"{names[c]}_rgb{t:06d}.jpg",
        mask_path=lambda c, t: res / "masks" / names[c] / f"{names[c]}_mask{t:06d}.png",
        list_dirs=lambda c: (res / "rgbs" / names[c], res / "masks" / names[c]),
    )
    missing = read_missing_list(root / "missing_img_files.txt", names)
    return build_body_subject(root=root, name=actor, layout=layout, cameras=cameras, params=params, spec=spec,
                              missing=missing, scale=scale,
                              extra_meta={"sequence": root.name, "resolution": RESOLUTION})
