"""A 16-camera frontal capture rig in the style of NeRSemble.

The rig has 16 cameras on a frontal arc around the head, about 1 m away, in three rows:

- cameras 0..4   upper row (looking down ~18 deg), yaw -50..+50 deg
- cameras 5..11  middle row (eye level), yaw -60..+60 deg; **camera 8 is the frontal camera**
  (yaw 0), like NeRSemble's camera 8 that VHAP/GaussianAvatars use for novel-view synthesis
- cameras 12..15 lower row (looking up ~14 deg), yaw -36..+36 deg

Each camera gets a deterministic "calibration imperfection" like a real rig: fx != fy (0.5-1 %),
principal point off-centre by a few percent of the image size, distance 0.95-1.05 m, a small
roll about the optical axis and a small aim error. Full size is the NeRSemble/VHAP DS2-0.5x
resolution, 550 (W) x 802 (H); smaller sizes scale K exactly like :meth:`Camera.resized`.

World frame: FLAME's (x to the subject's left, y up, z out of the face); the subject looks
along +z toward camera 8. Cameras are OpenCV (x right, y down, z forward).
"""

from __future__ import annotations

import math

import numpy as np

from avatarbench.data.camera import Camera

FULL_WIDTH = 550
FULL_HEIGHT = 802
FRONT_CAMERA = 8
NUM_CAMERAS = 16

#: (yaw_deg, pitch_deg) per camera index; positive yaw = camera on the subject's left (+x),
#: positive pitch = camera above the head looking down.
CAMERA_LAYOUT: tuple[tuple[float, float], ...] = (
    (-50.0, 18.0), (-25.0, 20.0), (0.0, 21.0), (25.0, 20.0), (50.0, 18.0),
    (-60.0, 2.0), (-40.0, 1.0), (-20.0, 0.0), (0.0, 0.0), (20.0, 0.0), (40.0, 1.0), (60.0, 2.0),
    (-36.0, -14.0), (-12.0, -15.0), (12.0, -15.0), (36.0, -14.0),
)

#: full-resolution focal length (pixels) of the rig's lenses, before per-camera jitter; with the
#: 802-pixel height it frames about 0.44 m at 1 m -- head and neck, like NeRSemble's DS2-0.5x crops.
BASE_FOCAL = 1850.0


def _look_at_opencv(center: np.ndarray, target: np.ndarray, roll_rad: float) -> np.ndarray:
    """(4, 4) OpenCV world-to-camera for a camera at ``center`` looking at ``target``."""
    fwd = target - center
    fwd = fwd / np.linalg.norm(fwd)
    up = np.array([0.0, 1.0, 0.0])
    right = np.cross(fwd, up)
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    # roll about the optical axis
    c, s = math.cos(roll_rad), math.sin(roll_rad)
    right, down = c * right + s * down, -s * right + c * down
    R_c2w = np.stack([right, down, fwd], axis=1)
    w2c = np.eye(4)
    w2c[:3, :3] = R_c2w.T
    w2c[:3, 3] = -R_c2w.T @ center
    return w2c


class CaptureRig:
    """The synthetic 16-camera rig.

    Args:
        scale: image scale relative to the full 550 x 802 (e.g. 0.25 -> 138 x 200).
        target: (3,) world point the cameras aim at (the head centre), metres.
        distance: nominal camera distance from ``target``, metres.
        seed: seed of the per-camera calibration jitter (fixed per rig, not per subject).
    """

    def __init__(self, scale: float = 0.25, target=(0.0, 0.0, 0.0), distance: float = 1.0, seed: int = 1234):
        if not (0 < scale <= 4):
            raise ValueError(f"CaptureRig.scale must be in (0, 4], got {scale}")
        self.scale = float(scale)
        self.target = np.asarray(target, dtype=np.float64).reshape(3)
        self.distance = float(distance)
        self.seed = int(seed)
        self.width = max(1, round(FULL_WIDTH * self.scale))
        self.height = max(1, round(FULL_HEIGHT * self.scale))

    def full_resolution_cameras(self) -> list[Camera]:
        """The 16 cameras at 550 x 802 (index order 0..15)."""
        rng = np.random.default_rng(self.seed)
        cams = []
        for ci, (yaw_d, pitch_d) in enumerate(CAMERA_LAYOUT):
            jit = rng.uniform(-1.0, 1.0, size=8)
            yaw = math.radians(yaw_d + 1.5 * jit[0])
            pitch = math.radians(pitch_d + 1.0 * jit[1])
            dist = self.distance * (1.0 + 0.05 * jit[2])
            if ci == FRONT_CAMERA:  # keep the reference view exactly frontal and level
                yaw, pitch = 0.0, 0.0
            direction = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
            center = self.target + dist * direction
            aim = self.target + np.array([0.006 * jit[3], 0.006 * jit[4], 0.0])
            w2c = _look_at_opencv(center, aim, math.radians(1.5 * jit[5]))
            fx = BASE_FOCAL * (1.0 + 0.03 * jit[6]) * dist / self.distance
            fy = fx * (1.0 + 0.0075 + 0.0025 * jit[7])  # fy 0.5-1 % larger than fx
            cxy = rng.uniform(-1.0, 1.0, size=2)
            sign = np.sign(cxy) + (cxy == 0)
            offset = sign * (0.015 + 0.025 * np.abs(cxy))  # 1.5-4 % off centre
            cx = FULL_WIDTH * (0.5 + offset[0])
            cy = FULL_HEIGHT * (0.5 + offset[1])
            cams.append(Camera.from_intrinsics(fx, fy, cx, cy, FULL_WIDTH, FULL_HEIGHT, w2c, id=ci,
                                               name=f"{220700100 + 7 * ci}"))
        return cams

    def cameras(self) -> list[Camera]:
        """The 16 cameras at the rig's working size ``(self.width, self.height)``."""
        return [c.resized(self.width, self.height) for c in self.full_resolution_cameras()]


def make_rig_cameras(scale: float = 0.25, target=(0.0, 0.0, 0.0), distance: float = 1.0,
                     seed: int = 1234) -> list[Camera]:
    """Shortcut for ``CaptureRig(scale, target, distance, seed).cameras()``."""
    return CaptureRig(scale, target, distance, seed).cameras()
