"""A generated :class:`~avatarbench.drivers.base.ParamSequence` -> frames of a target subject.

Heads (FLAME): identity (``shape``, ``static_offset``) from the target as in cross-reenactment
(:func:`avatarbench.data.splits.identity_params`); ``expr``, ``jaw_pose`` and ``eyes_pose``
absolute from the sequence; ``rotation``, ``neck_pose`` and ``translation`` are the target's rest
pose (its first training timestep) plus the sequence's values when the sequence marks them as
offsets (speech drivers: ``meta["offsets"]``), else absolute (parameter folders). Axis-angle
offsets are added component-wise (exact to first order; the offsets are < 0.1 rad).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from avatarbench.data.camera import Camera
from avatarbench.data.flame_params import LazyParams
from avatarbench.data.splits import TransferredDriving, identity_params, resolve_cameras
from avatarbench.data.subject import Frame, Subject
from avatarbench.drivers.base import ParamSequence
from avatarbench.errors import ConfigError


def rest_pose(subject: Subject) -> dict[str, np.ndarray]:
    """The target's pose keys at its first training timestep (zeros when absent)."""
    src = {}
    if "train" in subject.split_names and subject.frames("train"):
        src = subject.driving(min(f.timestep for f in subject.frames("train")))
    out = {}
    for k, n in (("rotation", 3), ("neck_pose", 3), ("translation", 3), ("eyes_pose", 6)):
        out[k] = np.asarray(src[k], np.float32).reshape(-1) if k in src else np.zeros(n, np.float32)
    return out


def body_base(target: Subject) -> dict[str, np.ndarray]:
    """SMPL-X driving of the target's first training frame (the base of speech body motion)."""
    tr = target.frames("train") if "train" in target.split_names else []
    return {k: np.asarray(v, np.float32) for k, v in (tr[0].driving if tr else {}).items()}


def _body_frames(target: Subject, seq: ParamSequence, cams: list[Camera], name: str) -> list[Frame]:
    """Bodies: the target's ``betas`` + the sequence's absolute SMPL-X parameters."""
    betas = np.asarray(target.canonical.get("betas", body_base(target).get("betas", np.zeros(10))), np.float32)
    out: list[Frame] = []
    for t in range(len(seq)):
        d = {k: np.asarray(v, np.float32) for k, v in seq.frame(t).items()}
        d["betas"] = betas
        for cam in cams:
            out.append(Frame(subject=target.name, sequence=name, timestep=t, camera=cam, image_path=None,
                             mask_path=None, driving=d, background=target.background, driver=name,
                             meta={"driver_sequence": name, "driver_timestep": t, "time_s": t / seq.fps}))
    return out


def driven_frames(target: Subject, seq: ParamSequence, *, cameras: Iterable[int | Camera] | None = None,
                  name: str = "speech") -> list[Frame]:
    """One frame per (sequence frame, camera), ordered by frame then camera (no images)."""
    if target.body_model != seq.body_model and not (target.body_model.startswith("smpl") and seq.body_model == "smplx"):
        raise ConfigError(f"cannot drive {target.body_model} subject {target.name!r} with a {seq.body_model} sequence")
    cams = resolve_cameras(target, cameras)
    if target.body_model != "flame":
        return _body_frames(target, seq, cams, name)
    identity = identity_params(target)
    rest = rest_pose(target)
    offsets = set(seq.meta.get("offsets") or [])
    out: list[Frame] = []
    for t in range(len(seq)):
        motion = {k: np.asarray(v, np.float32) for k, v in seq.frame(t).items()}
        for k in offsets:
            if k in motion and k in rest:
                motion[k] = rest[k] + motion[k]
        for k in rest:
            motion.setdefault(k, rest[k])
        driving = LazyParams(TransferredDriving(identity, motion, None), f"{target.name} driven by {name} t={t}")
        for cam in cams:
            out.append(Frame(subject=target.name, sequence=name, timestep=t, camera=cam, image_path=None,
                             mask_path=None, driving=driving, background=target.background, driver=name,
                             meta={"driver_sequence": name, "driver_timestep": t, "time_s": t / seq.fps}))
    return out
