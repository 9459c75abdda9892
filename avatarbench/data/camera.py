"""The one camera type of the suite: pinhole, OpenCV convention, full intrinsics.

Conventions
-----------
- ``world_to_cam`` maps homogeneous world points to the OpenCV camera frame: x right, y down,
  z forward (into the scene).
- ``K`` is the 3x3 pinhole matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` in pixels, with the
  centre of pixel (i, j) at (i + 0.5, j + 0.5) -- the convention of gsplat and of VHAP's ``cx, cy``.
  fx != fy and an off-centre principal point are honoured everywhere.
- OpenGL / Blender camera-to-world matrices (x right, y up, z backwards) are converted by
  flipping the camera's y and z axes: ``c2w_cv = c2w_gl @ diag(1, -1, -1, 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

_GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def _as_tensor(x, shape: tuple[int, ...], name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float64)
    if tuple(t.shape) != shape:
        raise ValueError(f"Camera.{name} must have shape {shape}, got {tuple(t.shape)}")
    return t


@dataclass
class Camera:
    """A calibrated pinhole camera.

    Attributes:
        K: (3, 3) float64 intrinsics in pixels.
        world_to_cam: (4, 4) float64 OpenCV world-to-camera transform.
        width: image width in pixels.
        height: image height in pixels.
        id: the dataset's camera index (e.g. 0..15 for NeRSemble/VHAP).
        name: the dataset's camera name/serial, if any.
    """

    K: torch.Tensor
    world_to_cam: torch.Tensor
    width: int
    height: int
    id: int = 0
    name: str = ""
    meta: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        self.K = _as_tensor(self.K, (3, 3), "K")
        self.world_to_cam = _as_tensor(self.world_to_cam, (4, 4), "world_to_cam")
        self.width = int(self.width)
        self.height = int(self.height)
        self.id = int(self.id)

    def __eq__(self, other) -> bool:
        """Value equality (the generated dataclass ``__eq__`` fails on tensor fields)."""
        if not isinstance(other, Camera):
            return NotImplemented
        return (self.width == other.width and self.height == other.height and self.id == other.id
                and self.name == other.name and torch.equal(self.K, other.K)
                and torch.equal(self.world_to_cam, other.world_to_cam))

    __hash__ = None  # mutable tensors: unhashable, like the generated dataclass

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_intrinsics(cls, fx, fy, cx, cy, width, height, world_to_cam, id=0, name="") -> "Camera":
        K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)
        return cls(K=K, world_to_cam=world_to_cam, width=width, height=height, id=id, name=name)

    @classmethod
    def from_opengl_c2w(cls, c2w_gl, fx, fy, cx, cy, width, height, id=0, name="") -> "Camera":
        """Build from an OpenGL/Blender camera-to-world (4, 4) matrix, as in NeRF/VHAP JSON."""
        c2w = _as_tensor(c2w_gl, (4, 4), "transform_matrix") @ _GL_TO_CV
        return cls.from_intrinsics(fx, fy, cx, cy, width, height, torch.linalg.inv(c2w), id, name)

    @classmethod
    def from_opencv_c2w(cls, c2w_cv, fx, fy, cx, cy, width, height, id=0, name="") -> "Camera":
        c2w = _as_tensor(c2w_cv, (4, 4), "cam_to_world")
        return cls.from_intrinsics(fx, fy, cx, cy, width, height, torch.linalg.inv(c2w), id, name)

    @classmethod
    def look_at(cls, eye, target, fx, fy, cx, cy, width, height, up=(0.0, 1.0, 0.0), id=0, name="") -> "Camera":
        """A camera at ``eye`` looking at ``target`` with world ``up`` pointing up in the image
        (OpenCV: z towards the target, x right = z x up, y down = z x x)."""
        eye_t = torch.as_tensor(np.asarray(eye, dtype=np.float64))
        fwd = torch.as_tensor(np.asarray(target, dtype=np.float64)) - eye_t
        fwd = fwd / torch.linalg.norm(fwd)
        right = torch.linalg.cross(fwd, torch.as_tensor(np.asarray(up, dtype=np.float64)))
        right = right / torch.linalg.norm(right)
        down = torch.linalg.cross(fwd, right)
        c2w = torch.eye(4, dtype=torch.float64)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, fwd, eye_t
        return cls.from_opencv_c2w(c2w, fx, fy, cx, cy, width, height, id, name)

    # ------------------------------------------------------------------ derived
    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def cam_to_world(self) -> torch.Tensor:
        """(4, 4) OpenCV camera-to-world."""
        return torch.linalg.inv(self.world_to_cam)

    @property
    def opengl_c2w(self) -> torch.Tensor:
        """(4, 4) OpenGL/Blender camera-to-world (the inverse of :meth:`from_opengl_c2w`)."""
        return self.cam_to_world @ _GL_TO_CV

    @property
    def center(self) -> torch.Tensor:
        """(3,) camera centre in world coordinates."""
        return self.cam_to_world[:3, 3]

    def resized(self, width: int, height: int) -> "Camera":
        """The same camera for an image resampled to (width, height).

        Pixel-edge coordinates scale linearly, so fx, cx scale by width ratio and fy, cy by height
        ratio (valid for the +0.5 pixel-centre convention).
        """
        sx, sy = width / self.width, height / self.height
        K = self.K.clone()
        K[0] *= sx
        K[1] *= sy
        return Camera(K=K, world_to_cam=self.world_to_cam.clone(), width=width, height=height, id=self.id,
                      name=self.name, meta=dict(self.meta))

    def scaled(self, factor: float) -> "Camera":
        """Resize by a factor, rounding the image size to whole pixels."""
        return self.resized(max(1, round(self.width * factor)), max(1, round(self.height * factor)))

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Project world points.

        Args:
            points: (N, 3) world coordinates.
        Returns:
            (N, 3): pixel x, pixel y, camera depth z.
        """
        p = points.to(torch.float64)
        pc = p @ self.world_to_cam[:3, :3].T + self.world_to_cam[:3, 3]
        uv = pc @ self.K.T
        return torch.cat([uv[:, :2] / uv[:, 2:3], pc[:, 2:3]], dim=1)

    def to_dict(self) -> dict:
        """JSON-friendly summary (used by ``avatarbench data inspect``)."""
        return {
            "id": self.id,
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "K": self.K.tolist(),
            "world_to_cam": self.world_to_cam.tolist(),
        }


def stack_cameras(cameras: list[Camera], device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch cameras for the renderer.

    Returns:
        viewmats: (C, 4, 4) world-to-camera; Ks: (C, 3, 3).
    """
    viewmats = torch.stack([c.world_to_cam for c in cameras]).to(device=device, dtype=dtype)
    Ks = torch.stack([c.K for c in cameras]).to(device=device, dtype=dtype)
    return viewmats, Ks
