"""THuman4.0 loader.

Layout of one subject folder (Animatable Gaussians' ``MvRgbDatasetTHuman4``; also the layout its
``gen_data/GEN_DATA.md`` recommends for custom captures)::

    subject00/
      calibration.json             {"cam00": {"K", "R", "T", "imgSize"}, "cam01": ..., ...}
      smpl_params.npz              SMPL-X fits (see avatarbench.data.smpl_params)
      missing_img_files.txt        "cam07/00000123.jpg" lines to skip (upstream requires it;
                                   here it is optional)
      images/cam%02d/%08d.jpg
      masks/cam%02d/%08d.jpg

Calibration convention as AvatarReX: ``x_cam = R @ x_world + T``, ``imgSize = [width, height]``.
Camera index i is the key ``cam%02d % i`` (24 cameras in the release).
"""

from __future__ import annotations

import json
from pathlib import Path

from avatarbench.data.avatarrex import read_krt_calibration
from avatarbench.data.body_splits import (BodyLayout, body_split_spec, build_body_subject, read_missing_list,
                                          read_subject_json, split_spec_from_json)
from avatarbench.data.smpl_params import load_smplx_params
from avatarbench.data.subject import Subject
from avatarbench.errors import DataError

CALIBRATION_FILE = "calibration.json"


def _camera_names(path: Path) -> list[str]:
    """``cam00 .. cam{N-1}`` for a calibration with N entries (the upstream indexing)."""
    if not path.exists():
        raise DataError(path, "calibration file not found", "calibration.json next to smpl_params.npz")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON ({e.msg} at line {e.lineno})",
                        "a JSON object keyed cam00, cam01, ...") from None
    if not isinstance(data, dict) or not data:
        raise DataError(path, "calibration is empty or not an object", "a JSON object keyed cam00, cam01, ...")
    names = [f"cam{i:02d}" for i in range(len(data))]
    extra = sorted(set(data) - set(names))
    if extra:
        raise DataError(path, f"unexpected camera key {extra[0]!r}", f"keys cam00..cam{len(data) - 1:02d}")
    return names


def load_thuman4(path: str | Path, scale: float | None = None) -> Subject:
    """Load a THuman4.0 subject folder.

    Args:
        path: the subject folder (holding ``calibration.json`` and ``images/``).
        scale: resolution factor applied to the native image size (None = 1).

    Returns:
        A ``kind='body'`` :class:`Subject` (splits from :mod:`avatarbench.data.body_splits`;
        subject00: train = 23 cameras x frames [0, 2000), novel_view = cam07,
        self_reenact = cam18 x frames [2000, 2500)).
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(root, "subject folder not found", "a THuman4.0 subject folder")
    calib = root / CALIBRATION_FILE
    names = _camera_names(calib)
    cameras = read_krt_calibration(calib, names)
    params = load_smplx_params(root / "smpl_params.npz")
    info = read_subject_json(root)
    if info and "splits" in info:
        spec = split_spec_from_json(info["splits"], root / "avatarbench_subject.json", "thuman4", root.name,
                                    len(cameras), params.num_frames, names)
    else:
        spec = body_split_spec("thuman4", root.name, len(cameras), params.num_frames, root)
    layout = BodyLayout(
        dataset="thuman4",
        image_path=lambda c, t: root / "images" / names[c] / f"{t:08d}.jpg",
        mask_path=lambda c, t: root / "masks" / names[c] / f"{t:08d}.jpg",
        list_dirs=lambda c: (root / "images" / names[c], root / "masks" / names[c]),
    )
    missing_file = root / "missing_img_files.txt"
    missing = read_missing_list(missing_file, names)
    return build_body_subject(root=root, name=root.name, layout=layout, cameras=cameras, params=params, spec=spec,
                              missing=missing, scale=scale,
                              extra_meta={"missing_list_present": missing_file.exists()})
