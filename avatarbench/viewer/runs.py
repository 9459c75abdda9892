"""One trained run as the viewer sees it: timelines over splits, frames, splats, renders, records.

Nothing here depends on viser, so it is tested without a browser.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from avatarbench.data.camera import Camera
from avatarbench.data.subject import Frame
from avatarbench.engine.restore import TrainedRun, load_trained_run
from avatarbench.viewer import controls as C
from avatarbench.viewer.splats import SplatArrays, choose_scene_scale, to_splats

#: timeline names: the subject's splits plus the cross-identity drivers
TIMELINES = ("train", "novel_view", "self_reenact", "cross_reenact")


@dataclass
class Step:
    """One timeline position: a timestep with its frame per camera id."""

    sequence: str
    timestep: int
    frames: dict[int, Frame]


def group_timeline(frames: list[Frame]) -> list[Step]:
    """Frames -> steps ordered by first appearance of each (sequence, timestep)."""
    steps: dict[tuple[str, int], Step] = {}
    for f in frames:
        key = (f.sequence, f.timestep)
        if key not in steps:
            steps[key] = Step(f.sequence, f.timestep, {})
        steps[key].frames.setdefault(f.camera.id, f)
    return list(steps.values())


def to_uint8(rgb: torch.Tensor) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> uint8, rounded as the evaluation's 8-bit renders."""
    return np.floor(rgb.detach().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def error_heatmap(pred: np.ndarray, gt: np.ndarray, vmax: float = 0.25) -> np.ndarray:
    """(H, W, 3) uint8 colour map of the per-pixel mean absolute error of two uint8 images
    (black 0 -> red -> yellow -> white at ``vmax`` and above)."""
    err = np.abs(pred.astype(np.float32) - gt.astype(np.float32)).mean(-1) / 255.0
    t = np.clip(err / vmax, 0, 1)
    rgb = np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], -1)
    return (rgb * 255 + 0.5).astype(np.uint8)


def camera_from_view(wxyz, position, fov_y: float, aspect: float, height: int) -> Camera:
    """A :class:`Camera` for a viewer camera: ``wxyz``/``position`` = R, t of camera-to-world in
    the OpenCV convention (viser's), vertical field of view ``fov_y`` (radians)."""
    w, x, y, z = (float(a) for a in np.asarray(wxyz) / np.linalg.norm(wxyz))
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                  [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                  [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    c2w = np.eye(4)
    c2w[:3, :3] = R
    c2w[:3, 3] = np.asarray(position, dtype=np.float64)
    H = int(height)
    W = max(1, int(round(H * float(aspect))))
    f = 0.5 * H / math.tan(0.5 * float(fov_y))
    return Camera.from_opencv_c2w(torch.as_tensor(c2w), f, f, W / 2, H / 2, W, H)


def camera_pose_wxyz(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """(wxyz (4,), position (3,)) of a camera's OpenCV camera-to-world rotation and centre."""
    R = cam.cam_to_world[:3, :3].numpy()
    t = cam.cam_to_world[:3, 3].numpy()
    tr = np.trace(R)
    if tr > 0:
        s = 2 * math.sqrt(tr + 1)
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2 * math.sqrt(max(1e-12, 1 + R[i, i] - R[j, j] - R[k, k]))
        q = [0.0] * 4
        q[0] = (R[k, j] - R[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (R[j, i] + R[i, j]) / s
        q[1 + k] = (R[k, i] + R[i, k]) / s
    q = np.asarray(q)
    return q / np.linalg.norm(q), t


class RunView:
    """A trained run opened for viewing.

    Args:
        trained: the rebuilt run (:func:`avatarbench.engine.restore.load_trained_run`).
    """

    def __init__(self, trained: TrainedRun):
        self.trained = trained
        self.method = trained.method
        self.subject = trained.subject
        self.kind = trained.subject.kind
        self._timelines: dict[str, list[Step]] = {}
        self._records: dict[str, dict[str, dict]] = {}
        self._pca: C.PosePCA | None = None
        self._body_model = None
        self.client_side = self._probe_client_side()

    @classmethod
    def open(cls, run_dir: Path, device="cpu") -> "RunView":
        return cls(load_trained_run(run_dir, device=device))

    @property
    def label(self) -> str:
        return self.trained.label

    def _probe_client_side(self) -> bool:
        frames = self.subject.frames("train")
        g = self.method.gaussians_at(frames[0]) if frames else None
        self.view_dependent = g is not None and bool(g.sh_degree)
        self.scene_scale = choose_scene_scale(g.scales) if g is not None else 1.0
        return g is not None

    # ------------------------------------------------------------------ timelines
    def timeline_names(self) -> list[str]:
        names = [s for s in TIMELINES[:3] if s in self.subject.split_names]
        return names + ["cross_reenact"]

    def timeline(self, name: str) -> list[Step]:
        """Steps of a split (all its frames; cross_reenact: the run's default driver)."""
        if name not in self._timelines:
            if name not in TIMELINES:
                raise ValueError(f"unknown timeline {name!r} (expected one of {', '.join(TIMELINES)})")
            if name == "cross_reenact":
                from omegaconf import OmegaConf

                from avatarbench.engine.run import split_frames

                cfg = OmegaConf.create(OmegaConf.to_container(self.trained.cfg, resolve=False))
                cfg.run.split = "cross_reenact"
                cfg.protocol.max_frames = None
                frames = split_frames(self.subject, cfg)
            else:
                frames = self.subject.frames(name)
            self._timelines[name] = group_timeline(frames)
        return self._timelines[name]

    def frame(self, timeline: str, index: int, camera_id: int | None = None) -> Frame:
        steps = self.timeline(timeline)
        if not steps:
            raise ValueError(f"timeline {timeline!r} is empty")
        step = steps[int(index) % len(steps)]
        if camera_id is not None and camera_id in step.frames:
            return step.frames[camera_id]
        return step.frames[sorted(step.frames)[0]]

    # ------------------------------------------------------------------ driving
    def controls(self) -> list[C.Control]:
        return C.head_controls() if self.kind == "head" else C.body_controls()

    def pose_pca(self) -> C.PosePCA:
        if self._pca is None:
            poses = np.stack([np.asarray(s.frames[sorted(s.frames)[0]].driving["body_pose"]).reshape(-1)
                              for s in self.timeline("train")])
            self._pca = C.PosePCA.fit(poses, 4)
        return self._pca

    def driven(self, frame: Frame, values: dict[str, float] | None) -> Frame:
        """``frame`` with the manual control offsets applied (``values`` None or all zero: unchanged;
        a driven frame counts as driven by hand, so methods use ``frame.driving``)."""
        if not values or not any(abs(v) > 0 for v in values.values()):
            return frame
        if self.kind == "head":
            driving = C.apply_head_controls(frame.driving, values)
        else:
            driving = C.apply_body_controls(frame.driving, values, self.pose_pca())
        return replace(frame, driving=driving, driver="manual")

    # ------------------------------------------------------------------ outputs
    def splats(self, frame: Frame, camera_center=None, scene_scale: float | None = None) -> SplatArrays | None:
        g = self.method.gaussians_at(frame)
        if g is None:
            return None
        if camera_center is None:
            camera_center = frame.camera.center.numpy()
        return to_splats(g, camera_center, self.scene_scale if scene_scale is None else scene_scale)

    @torch.no_grad()
    def render(self, frame: Frame, camera: Camera | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(H, W, 3) uint8 benchmark render through ``method.render`` and (H, W) alpha or None."""
        if camera is not None:
            frame = replace(frame, camera=camera)
        out = self.method.render(frame)
        alpha = None if out.alpha is None else out.alpha[..., 0].detach().cpu().numpy()
        return to_uint8(out.rgb), alpha

    def ground_truth(self, frame: Frame) -> np.ndarray | None:
        return to_uint8(frame.image()) if frame.has_gt else None

    def records(self, split: str) -> dict[str, dict]:
        """Per-image metrics of ``eval/<split>/metrics_per_image.csv`` by frame key ({} if none)."""
        if split not in self._records:
            path = self.trained.run_dir / "eval" / split / "metrics_per_image.csv"
            rows: dict[str, dict] = {}
            if path.is_file():
                with open(path, newline="") as fh:
                    for row in csv.DictReader(fh):
                        rows[row.get("key", "")] = row
            self._records[split] = rows
        return self._records[split]

    def metrics_text(self, split: str, frame: Frame) -> str:
        row = self.records(split).get(frame.key)
        if row is None:
            return f"{frame.key}: no per-image record in eval/{split}/"
        parts = []
        for col, fmt in (("psnr", "PSNR {:.2f} dB"), ("ssim", "SSIM {:.4f}"), ("lpips", "LPIPS {:.4f}")):
            try:
                parts.append(fmt.format(float(row[col])))
            except (KeyError, TypeError, ValueError):
                parts.append(f"{col.upper()} n/a")
        return f"{frame.key}: " + ", ".join(parts)

    def driving_mesh(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        """(V, 3) float32 vertices and (F, 3) int32 faces of the FLAME / SMPL-X mesh driving ``frame``."""
        if self._body_model is None:
            if self.kind == "head":
                from avatarbench.bodymodels.flame import load_flame

                self._body_model = load_flame(self.subject.body_model_path, teeth=False)
            else:
                from avatarbench.bodymodels.smplx import load_smplx

                self._body_model = load_smplx(self.subject.body_model_path)
        with torch.no_grad():
            out = self._body_model.forward_dict(frame.driving_tensors())
        return (out.verts[0].numpy().astype(np.float32),
                self._body_model.faces.cpu().numpy().astype(np.int32))
