"""The data layer: subjects, cameras, splits and the dataset loaders.

Public API::

    from avatarbench.data import load_subject
    subject = load_subject("synth_head")                 # or a VHAP / AvatarReX / THuman4 / ActorsHQ folder
    subject = load_subject("/data/UNION10_306_...", scale=0.5)
    frames = subject.frames("train")                    # train | novel_view | self_reenact
    cross = cross_reenact_frames(subject, load_subject("/data/104_FREE_..."), driver_split="FREE")
    six = subset_train_views(subject, 6)

See :mod:`avatarbench.data.subject` for the Frame/Subject contract and
:mod:`avatarbench.data.registry` for format detection.
"""

from __future__ import annotations

from avatarbench.data.camera import Camera, stack_cameras
from avatarbench.data.flame_params import read_flame_params, stack_flame_params
from avatarbench.data.registry import detect_format, inspect_subject, load_subject
from avatarbench.data.splits import cross_reenact_frames, spread_camera_ids, subset_train_views
from avatarbench.data.subject import SPLITS, Frame, Subject
from avatarbench.data.vhap import load_vhap

__all__ = [
    "SPLITS",
    "Camera",
    "Frame",
    "Subject",
    "cross_reenact_frames",
    "detect_format",
    "inspect_subject",
    "load_subject",
    "load_vhap",
    "read_flame_params",
    "spread_camera_ids",
    "stack_cameras",
    "stack_flame_params",
    "subset_train_views",
]
