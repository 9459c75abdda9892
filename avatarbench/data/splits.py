"""Derived splits: cross-identity reenactment and the training-view-count study.

- :func:`cross_reenact_frames`: the target's cameras, driven by another subject's motion.
  Heads, transfer rule of GaussianAvatars' cross-identity rendering (``render.py -t``): the
  identity parameters stay the target's (FLAME ``shape`` and ``static_offset``) and every motion
  parameter (``expr, rotation, neck_pose, jaw_pose, eyes_pose, translation``) is copied
  **absolutely** from the driver -- no relative/delta transfer. Bodies (SMPL-X) are handed to
  :func:`avatarbench.data.body_splits.body_cross_frames` (target ``betas``, driver pose, root
  motion aligned to the target's first frame). There are no ground-truth images.
- :func:`subset_train_views`: keep ``n`` training cameras spread evenly over the rig's arc
  (see :func:`spread_camera_ids` for the deterministic rule); the novel-view camera(s) are never
  chosen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from avatarbench.data.camera import Camera
from avatarbench.data.flame_params import FLAME_IDENTITY_KEYS, FLAME_MOTION_KEYS, LazyParams
from avatarbench.data.subject import Frame, Subject
from avatarbench.errors import ConfigError

#: body model -> keys that define the identity (kept from the target in cross-reenactment)
IDENTITY_KEYS: dict[str, tuple[str, ...]] = {"flame": FLAME_IDENTITY_KEYS}
#: body model -> motion keys copied from the driver (None: every key that is not identity)
MOTION_KEYS: dict[str, tuple[str, ...] | None] = {"flame": FLAME_MOTION_KEYS}
#: keys never transferred: per-identity geometry that is not part of the motion
NEVER_TRANSFERRED = ("dynamic_offset",)


# --------------------------------------------------------------------------- cross-reenactment
class TransferredDriving:
    """Picklable loader: the target's identity parameters + the driver's motion of one timestep."""

    def __init__(self, identity: dict[str, np.ndarray], motion: Mapping[str, np.ndarray],
                 motion_keys: Sequence[str] | None):
        self.identity = identity
        self.motion = motion
        self.motion_keys = motion_keys

    def __call__(self) -> dict[str, np.ndarray]:
        if self.motion_keys is None:
            keys = [k for k in self.motion if k not in self.identity and k not in NEVER_TRANSFERRED]
        else:
            keys = [k for k in self.motion_keys if k in self.motion]
        out = {k: np.asarray(self.motion[k], dtype=np.float32) for k in keys}
        out.update(self.identity)
        return out


def identity_params(subject: Subject) -> dict[str, np.ndarray]:
    """The identity parameters the subject's avatar is trained with.

    Taken from the first training timestep (as GaussianAvatars takes ``shape`` and
    ``static_offset`` from timestep 0), else from ``subject.canonical``.
    """
    keys = IDENTITY_KEYS.get(subject.body_model)
    if keys is None:
        raise ConfigError(f"cross-reenactment: no transfer rule for body model {subject.body_model!r}")
    train = subject.frames("train") if "train" in subject.split_names else []
    source: Mapping = {}
    if train:
        source = subject.driving(min(f.timestep for f in train))
    elif subject.canonical:
        source = subject.canonical
    return {k: np.asarray(source[k], dtype=np.float32) for k in keys if k in source}


def _driver_frames(driver: Subject, driver_split: str) -> list[Frame]:
    if driver_split in driver.split_names:
        return driver.frames(driver_split)
    if driver_split == "all":
        return [f for s in driver.split_names for f in driver.frames(s)]
    seqs = driver.sequences()
    if driver_split in seqs:
        return [f for s in driver.split_names for f in driver.frames(s) if f.sequence == driver_split]
    raise ConfigError(f"driver {driver.name!r} has no split or sequence {driver_split!r} "
                      f"(splits: {', '.join(driver.split_names)}; sequences: {', '.join(seqs)})")


def resolve_cameras(target, cameras=None) -> list:
    """``target``'s cameras named by ``cameras`` (ids or :class:`Camera` objects; None = all, sorted by
    id). An unknown id is a one-line :class:`ConfigError`."""
    if cameras is None:
        return [target.cameras[i] for i in sorted(target.cameras)]
    cams = []
    for c in cameras:
        if isinstance(c, Camera):
            cams.append(c)
        elif int(c) in target.cameras:
            cams.append(target.cameras[int(c)])
        else:
            raise ConfigError(f"target {target.name!r} has no camera {c} (has {sorted(target.cameras)})")
    return cams


def cross_reenact_frames(target: Subject, driver: Subject, *, driver_split: str = "self_reenact",
                         cameras: Iterable[int | Camera] | None = None) -> list[Frame]:
    """Frames of ``target`` (the avatar) driven by ``driver``'s motion.

    Args:
        target: the subject whose avatar is rendered; its cameras are used.
        driver: the subject whose motion drives it (may be a single-sequence folder, e.g. FREE).
        driver_split: a split of the driver (default its held-out ``self_reenact`` sequence), a
            sequence name of the driver (e.g. ``"FREE"``: all its timesteps from every split), or
            ``"all"``. Note that a single-sequence VHAP export keeps only its last 30 % of
            timesteps in ``self_reenact``; pass the sequence name to use the whole sequence.
        cameras: target camera ids or :class:`Camera` objects; None = all of ``target.cameras``
            (heads; bodies use ``body_cross_frames``' default, the target's test cameras).

    Returns:
        Heads: one frame per (driver timestep, camera), ordered by timestep then camera:
        ``subject=target.name``, ``sequence`` and ``timestep`` of the driver, no image or mask,
        ``driver=driver.name``, ``driving`` = target identity + driver motion (see module
        docstring), ``meta={"driver_sequence", "driver_timestep"}``.
    """
    if target.kind != driver.kind or target.body_model != driver.body_model:
        raise ConfigError(f"cannot drive {target.kind}/{target.body_model} subject {target.name!r} with "
                          f"{driver.kind}/{driver.body_model} subject {driver.name!r}")
    if target.kind == "body":
        from avatarbench.data.body_splits import body_cross_frames

        ids = None if cameras is None else [c.id if isinstance(c, Camera) else int(c) for c in cameras]
        return body_cross_frames(target, driver, driver_split=driver_split, cameras=ids)
    cams = resolve_cameras(target, cameras)
    identity = identity_params(target)
    motion_keys = MOTION_KEYS.get(target.body_model)
    by_t: dict[int, Frame] = {}
    for f in _driver_frames(driver, driver_split):
        by_t.setdefault(f.timestep, f)
    out: list[Frame] = []
    for t in sorted(by_t):
        src = by_t[t]
        driving = LazyParams(TransferredDriving(identity, src.driving, motion_keys),
                             f"{target.name} driven by {driver.name} t={t}")
        for cam in cams:
            out.append(Frame(subject=target.name, sequence=src.sequence, timestep=t, camera=cam, image_path=None,
                             mask_path=None, driving=driving, background=target.background, driver=driver.name,
                             meta={"driver_sequence": src.sequence, "driver_timestep": t}))
    return out


# --------------------------------------------------------------------------- view subsets
def _look_at_point(cams: Sequence[Camera]) -> np.ndarray:
    """Least-squares point closest to all optical axes (the head for a capture rig), else the origin."""
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c in cams:
        c2w = c.cam_to_world.numpy()
        o, d = c2w[:3, 3], c2w[:3, 2] / np.linalg.norm(c2w[:3, 2])
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ o
    if len(cams) < 2 or np.linalg.cond(A) > 1e6:
        return np.zeros(3)
    return np.linalg.solve(A, b)


def _rig_up(c2ws: np.ndarray) -> np.ndarray:
    """(3,) world up of a rig of upright cameras.

    Upright cameras have horizontal x (right) axes whatever their pitch, so up is the direction
    orthogonal to all of them (least squares); its sign follows minus the mean OpenCV y axis. When
    the x axes do not span a plane (e.g. all cameras share one yaw), minus the mean y axis is used.
    """
    xs = c2ws[:, :3, 0]
    down_mean = c2ws[:, :3, 1].mean(0)
    fallback = -down_mean / np.linalg.norm(down_mean) if np.linalg.norm(down_mean) > 1e-6 else np.array([0.0, 1.0, 0.0])
    if len(xs) < 2:
        return fallback
    _, sv, vt = np.linalg.svd(xs, full_matrices=True)
    if sv[1] < 1e-3 * sv[0]:
        return fallback
    up = vt[2]
    return up if up @ fallback >= 0 else -up


def rig_angles(cams: Sequence[Camera]) -> tuple[np.ndarray, np.ndarray]:
    """(C,) azimuth and (C,) elevation in radians of each camera around the rig's look-at point.

    World up is the direction orthogonal to the cameras' x axes (capture rigs hold cameras
    upright, :func:`_rig_up`); azimuth 0 is the mean horizontal direction from the look-at point
    to the cameras (the front of an arc-shaped rig).
    """
    c2ws = np.stack([c.cam_to_world.numpy() for c in cams])
    centre = _look_at_point(cams)
    up = _rig_up(c2ws)
    rel = c2ws[:, :3, 3] - centre
    elev = np.arctan2(rel @ up, np.linalg.norm(rel - np.outer(rel @ up, up), axis=1))
    dirs = rel - np.outer(rel @ up, up)
    norms = np.linalg.norm(dirs, axis=1, keepdims=True)
    dirs = np.where(norms > 1e-9, dirs / np.maximum(norms, 1e-12), 0.0)
    fwd = dirs.mean(0)
    if np.linalg.norm(fwd) < 1e-3:  # a full ring: no front; use the first camera
        fwd = dirs[0] if np.linalg.norm(dirs[0]) > 0 else np.cross(up, [1.0, 0.0, 0.0])
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(up, fwd)
    return np.arctan2(dirs @ right, dirs @ fwd), elev


def spread_camera_ids(cameras: Mapping[int, Camera] | Sequence[Camera], n: int) -> list[int]:
    """Choose ``n`` camera ids spread evenly over the rig (deterministic).

    Rule: compute each camera's azimuth around the rig's vertical axis (:func:`rig_angles`).
    For an arc (the largest azimuth gap between neighbours is more than twice the mean spacing),
    place ``n`` targets evenly from one end of the arc to the other (both ends included; ``n = 1``
    targets the frontal direction, azimuth 0); for a full ring, place them every ``360/n`` degrees
    starting at the first camera after the largest gap. Each target takes the nearest unused camera
    (ties: smaller |elevation|, then smaller id).

    Returns:
        sorted list of ``min(n, C)`` camera ids.
    """
    cams = list(cameras.values()) if isinstance(cameras, Mapping) else list(cameras)
    cams.sort(key=lambda c: c.id)
    if n <= 0:
        raise ConfigError(f"number of training views must be positive, got {n}")
    if n >= len(cams):
        return [c.id for c in cams]
    az, elev = rig_angles(cams)
    order = np.argsort(az, kind="stable")
    a_sorted = az[order]
    m = len(cams)
    gaps = np.diff(np.concatenate([a_sorted, a_sorted[:1] + 2 * math.pi]))
    j = int(np.argmax(np.round(gaps, 9)))  # rounded: equal gaps of a ring tie deterministically
    start = a_sorted[(j + 1) % m]
    span = 2 * math.pi - gaps[j]
    if n == 1:
        targets = [0.0]
    elif gaps[j] > 2 * (2 * math.pi / m):  # an arc
        targets = [start + k * span / (n - 1) for k in range(n)]
    else:  # a ring
        targets = [start + k * 2 * math.pi / n for k in range(n)]
    heights = np.abs(elev)  # tie-break only
    unused = set(range(m))
    chosen: list[int] = []
    for tgt in targets:
        def dist(i: int) -> float:
            d = (az[i] - tgt) % (2 * math.pi)
            return min(d, 2 * math.pi - d)
        best = min(unused, key=lambda i: (round(dist(i), 9), heights[i], cams[i].id))
        unused.discard(best)
        chosen.append(cams[best].id)
    return sorted(chosen)


def subset_train_views(subject: Subject, n_views: int | None) -> Subject:
    """A copy of ``subject`` whose ``train`` split keeps ``n_views`` cameras (6/8/16-view study).

    Candidates are the cameras of the train split minus any camera of the ``novel_view`` split;
    the choice is :func:`spread_camera_ids`. ``n_views=None`` or ``n_views >=`` the number of
    candidates keeps every training camera. Other splits are unchanged. The chosen ids are in
    ``meta["train_cameras"]`` and ``meta["num_train_views"]``.
    """
    if n_views is None:
        return subject
    n_views = int(n_views)
    train = subject.frames("train")
    held_out = {f.camera.id for f in subject.frames("novel_view")} if "novel_view" in subject.split_names else set()
    candidates: dict[int, Camera] = {}
    for f in train:
        if f.camera.id not in held_out:
            candidates.setdefault(f.camera.id, subject.cameras.get(f.camera.id, f.camera))
    if not candidates:
        raise ConfigError(f"subject {subject.name!r} has no training cameras to choose from")
    keep = set(spread_camera_ids(candidates, n_views))
    new = subject.with_frames("train", [f for f in train if f.camera.id in keep])
    new.meta["train_cameras"] = sorted(keep)
    new.meta["num_train_views"] = len(keep)
    new.meta["requested_train_views"] = n_views
    return new
