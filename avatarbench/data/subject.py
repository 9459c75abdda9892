"""Subjects, frames and splits: the data contract between datasets, methods and metrics.

A :class:`Subject` is one captured (or synthetic) person: its cameras, its sequences of
timesteps with driving parameters (FLAME for heads, SMPL-X for bodies), and its named splits.
A :class:`Frame` is one (timestep, camera) pair with a lazily loaded image and mask.

Split names (the suite's protocols, see docs/protocols.md):

- ``train``          frames the avatar is fitted on
- ``novel_view``     held-out camera(s) on the training timesteps
- ``self_reenact``   held-out sequence(s) of the same subject, all cameras
- ``cross_reenact``  built by :func:`avatarbench.data.splits.cross_reenact_frames`: the target's
                     cameras driven by another subject's motion; no ground-truth images

Driving parameters are dicts of float32 numpy arrays without a batch dimension, e.g. for FLAME:
``shape (300,) expr (100,) rotation (3,) neck_pose (3,) jaw_pose (3,) eyes_pose (6,)
translation (3,) static_offset (V, 3)`` and optionally ``dynamic_offset (V, 3)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import torch

from avatarbench.data.camera import Camera
from avatarbench.data.images import load_image, load_mask

SPLITS = ("train", "novel_view", "self_reenact", "cross_reenact")


@dataclass
class Frame:
    """One (timestep, camera) sample.

    Attributes:
        subject: subject name.
        sequence: sequence name (e.g. ``EMO-1``).
        timestep: the subject's global timestep index (VHAP union numbering).
        camera: the camera at the subject's working resolution.
        image_path: RGB(A) image, or None when there is no ground truth (cross-reenactment).
        mask_path: foreground mask, or None.
        driving: driving parameters for this timestep (see module docstring): a dict, or a
            read-only Mapping that loads on first access (VHAP's per-timestep npz files).
        background: RGB in [0, 1] the image is composited on.
        driver: name of the subject whose motion drives this frame (cross-reenactment), else None.
    """

    subject: str
    sequence: str
    timestep: int
    camera: Camera
    image_path: Path | None
    mask_path: Path | None
    driving: Mapping[str, np.ndarray]
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    driver: str | None = None
    meta: dict = field(default_factory=dict, repr=False)

    @property
    def key(self) -> str:
        """Stable id used in per-image results, e.g. ``EMO-1/t00012_c08``."""
        return f"{self.sequence}/t{self.timestep:05d}_c{self.camera.id:02d}"

    @property
    def has_gt(self) -> bool:
        return self.image_path is not None

    def image(self) -> torch.Tensor:
        """(H, W, 3) float32 in [0, 1], composited on ``background``, at the camera's resolution."""
        if self.image_path is None:
            raise ValueError(f"frame {self.key} has no ground-truth image")
        return load_image(self.image_path, (self.camera.width, self.camera.height), self.background,
                          mask_path=self.mask_path if self.meta.get("composite_with_mask") else None,
                          expect_size=self.camera.meta.get("native_size"))

    def mask(self) -> torch.Tensor | None:
        """(H, W, 1) float32 in [0, 1] at the camera's resolution, or None."""
        if self.mask_path is None:
            return None
        return load_mask(self.mask_path, (self.camera.width, self.camera.height),
                         expect_size=self.camera.meta.get("native_size"))

    def driving_tensors(self, device=None) -> dict[str, torch.Tensor]:
        """Driving parameters as float32 tensors with a leading batch dim of 1."""
        return {k: torch.as_tensor(np.asarray(v), dtype=torch.float32, device=device)[None]
                for k, v in self.driving.items()}


class Subject:
    """A subject: cameras, timesteps with driving parameters, and named splits.

    Loaders (``avatarbench.data.vhap``, ``avatarbench.data.bodies``) construct it; methods and the
    engine only read it.

    Attributes:
        name: subject id, e.g. ``306`` or ``synth_head_a``.
        kind: ``"head"`` (FLAME-driven) or ``"body"`` (SMPL-X-driven).
        root: the folder it was loaded from.
        cameras: camera index -> :class:`Camera` at the working resolution.
        body_model: ``"flame"`` or ``"smplx"``.
        body_model_path: the model file the tracking belongs to, when the dataset names one
            (synthetic subjects ship their stand-in model); None = use the configured model.
        background: RGB in [0, 1].
        canonical: canonical driving parameters (e.g. VHAP's ``canonical_flame_param.npz``).
        meta: free-form facts (dataset name, resolution scale, source format, ...).
    """

    def __init__(self, name: str, kind: str, root: Path, cameras: dict[int, Camera],
                 frames: dict[str, list[Frame]], *, body_model: str, body_model_path: Path | None = None,
                 background=(1.0, 1.0, 1.0), canonical: dict | None = None,
                 gt_mesh_loader: Callable[[int], np.ndarray | None] | None = None, meta: dict | None = None):
        self.name = name
        self.kind = kind
        self.root = Path(root)
        self.cameras = cameras
        self._frames = frames
        self.body_model = body_model
        self.body_model_path = Path(body_model_path) if body_model_path else None
        self.background = tuple(float(b) for b in background)
        self.canonical = canonical or {}
        self._gt_mesh_loader = gt_mesh_loader
        self.meta = meta or {}
        self._by_timestep: dict[int, Frame] | None = None

    # ------------------------------------------------------------------ splits
    @property
    def split_names(self) -> list[str]:
        return [s for s in self._frames if self._frames[s]]

    def frames(self, split: str) -> list[Frame]:
        """Frames of a split (see module docstring for names)."""
        if split not in self._frames:
            from avatarbench.errors import ConfigError

            raise ConfigError(f"subject {self.name!r} has no split {split!r} (has: {', '.join(self._frames)})")
        return self._frames[split]

    def timesteps(self, split: str) -> list[int]:
        return sorted({f.timestep for f in self.frames(split)})

    def sequences(self, split: str | None = None) -> list[str]:
        splits = [split] if split else list(self._frames)
        seen: dict[str, None] = {}
        for s in splits:
            for f in self._frames.get(s, []):
                seen.setdefault(f.sequence, None)
        return list(seen)

    def driving(self, timestep: int) -> Mapping[str, np.ndarray]:
        """Driving parameters of a timestep (from any split)."""
        if getattr(self, "_by_timestep", None) is None:  # built once: O(1) lookups for subjects with ~30k frames
            index: dict[int, Frame] = {}
            for frames in self._frames.values():
                for f in frames:
                    index.setdefault(f.timestep, f)
            self._by_timestep = index
        f = self._by_timestep.get(int(timestep))
        if f is None:
            raise KeyError(f"subject {self.name!r} has no timestep {timestep}")
        return f.driving

    def gt_mesh(self, timestep: int) -> np.ndarray | None:
        """(V, 3) ground-truth mesh vertices of a timestep (synthetic subjects), else None."""
        return self._gt_mesh_loader(timestep) if self._gt_mesh_loader else None

    @property
    def gt_mesh_faces(self) -> np.ndarray | None:
        """(F, 3) faces of the ground-truth mesh, when there is one."""
        return self.meta.get("gt_mesh_faces")

    def with_frames(self, split: str, frames: Iterable[Frame]) -> "Subject":
        """A shallow copy with one split replaced (used for view-count studies)."""
        new = dict(self._frames)
        new[split] = list(frames)
        s = Subject.__new__(Subject)
        s.__dict__.update(self.__dict__)
        s._frames = new
        s._by_timestep = None
        s.meta = dict(self.meta)
        return s

    def summary(self) -> dict:
        """JSON-friendly summary (``avatarbench data inspect``)."""
        any_cam = next(iter(self.cameras.values()), None)
        return {
            "name": self.name,
            "kind": self.kind,
            "root": str(self.root),
            "body_model": self.body_model,
            "body_model_path": str(self.body_model_path) if self.body_model_path else None,
            "background": list(self.background),
            "num_cameras": len(self.cameras),
            "image_size": [any_cam.width, any_cam.height] if any_cam else None,
            "splits": {s: {"frames": len(f), "timesteps": len({x.timestep for x in f}),
                           "cameras": sorted({x.camera.id for x in f}),
                           "sequences": self.sequences(s)} for s, f in self._frames.items()},
            "cameras": {str(i): c.to_dict() for i, c in sorted(self.cameras.items())},
            "meta": {k: v for k, v in self.meta.items() if _is_jsonable(v)},
        }

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self._frames.items())
        return f"Subject({self.name!r}, kind={self.kind!r}, cameras={len(self.cameras)}, {sizes})"


def _is_jsonable(v, depth: int = 0) -> bool:
    """True for None/str/int/float/bool and lists/tuples/str-keyed dicts of them (no arrays)."""
    if v is None or isinstance(v, (str, int, float, bool)):
        return True
    if depth > 4:
        return False
    if isinstance(v, (list, tuple)):
        return all(_is_jsonable(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _is_jsonable(x, depth + 1) for k, x in v.items())
    return False


def with_camera(frame: Frame, camera: Camera) -> Frame:
    """A copy of ``frame`` seen through another camera (its image is no longer ground truth)."""
    return replace(frame, camera=camera, image_path=None, mask_path=None)
