"""Body baseline ``lbs_gaussians``: Gaussians on the canonical SMPL-X surface, posed by LBS only.

N Gaussians are sampled uniformly by area on the subject's canonical SMPL-X (Da-pose, the
subject's betas), each with the barycentric SMPL-X skinning weights of its sample point and
oriented with its face frame (flat along the normal). Colour, opacity and scale are learned
(static: no pose-dependent network, no position or rotation learning); posing uses exactly Animatable
Gaussians' forward LBS (``M = sum_j w_j A_live_j A_cano_j^-1``). It is the floor that
Animatable Gaussians' pose-dependent Gaussian maps must beat on novel poses.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from avatarbench.data.camera import stack_cameras
from avatarbench.data.subject import Frame
from avatarbench.engine.method import AvatarMethod, FrameGaussians, RenderOutput, Sample, Stage
from avatarbench.errors import ConfigError

__all__ = ["LbsGaussians"]


class LbsGaussians(AvatarMethod):
    """Static Gaussians on the canonical SMPL-X surface posed by LBS (see the module docstring)."""

    name = "lbs_gaussians"
    kind = "body"

    def stages(self) -> list[Stage]:
        return [Stage("colour", int(self.cfg.train.iterations))]

    def setup(self, train_frames: list[Frame]) -> None:
        from avatarbench.bodymodels.smplx import load_smplx
        from avatarbench.geometry.knn import mean_knn_distance
        from avatarbench.geometry.mesh import sample_surface
        from avatarbench.methods.animatable_gaussians.method import canonical_body_pose
        from avatarbench.methods.animatable_gaussians.posing import SmplxPoser
        from avatarbench.render.binding import face_frames, rotmat_to_quat_wxyz

        cfg, dev = self.cfg, self.device
        if not train_frames:
            raise ConfigError("lbs_gaussians: no training frames")
        self.smplx = load_smplx(self.subject.body_model_path).to(dev)
        betas = self.subject.canonical.get("betas") if self.subject.canonical else None
        if betas is None:
            betas = train_frames[0].driving.get("betas", np.zeros(10, np.float32))
        # the baseline has no network to move the mouth: its jaw opens through LBS (closed-jaw,
        # zero-expression canonical), unlike Animatable Gaussians' per-frame canonical face
        self.poser = SmplxPoser(self.smplx, np.asarray(betas), canonical_body_pose(str(cfg.canonical_pose)).to(dev),
                                canonical_face="neutral")
        cb = self.poser.canonical
        n = int(cfg.model.num_gaussians)
        gen = torch.Generator().manual_seed(int(cfg.seed))
        s = sample_surface(cb.verts, cb.faces, n, generator=gen)
        self.cano_pos = s.points.float()
        self.lbs_weights = (s.barycentric.unsqueeze(-1).to(cb.weights) * cb.weights[cb.faces[s.face_index]]).sum(1)
        _, R, _ = face_frames(cb.verts, cb.faces)
        self.cano_quat = rotmat_to_quat_wxyz(R[s.face_index]).float()
        d = mean_knn_distance(self.cano_pos, k=3, squared=True).clamp_min(1e-10).sqrt()
        # local axes [edge, normal, edge x normal]: flat along the normal
        ls = torch.log(d)[:, None] + torch.tensor([0.0, math.log(float(cfg.model.normal_thickness)), 0.0], device=dev)
        init_c, init_o = float(cfg.model.init_color), float(cfg.model.init_opacity)
        self.color_logit = torch.nn.Parameter(torch.full((n, 3), math.log(init_c / (1 - init_c)), device=dev))
        self.opacity_logit = torch.nn.Parameter(torch.full((n,), math.log(init_o / (1 - init_o)), device=dev))
        self.log_scale = torch.nn.Parameter(ls.contiguous())
        t = cfg.train
        self.optimizer = torch.optim.Adam([
            {"params": [self.color_logit], "lr": float(t.lr_color)},
            {"params": [self.opacity_logit], "lr": float(t.lr_opacity)},
            {"params": [self.log_scale], "lr": float(t.lr_scale)}])
        self.background = torch.tensor(self.subject.background, dtype=torch.float32, device=dev)
        self.train_timesteps = sorted({f.timestep for f in train_frames})

    def _gaussians(self, frame: Frame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from avatarbench.methods.animatable_gaussians.posing import apply_points, apply_rotations, blend_transforms

        M = blend_transforms(self.lbs_weights, self.poser.live_transforms(frame.driving))
        return apply_points(M, self.cano_pos), apply_rotations(M, self.cano_quat), torch.exp(self.log_scale)

    def _render(self, frame: Frame) -> tuple[torch.Tensor, torch.Tensor]:
        from avatarbench.render import rasterize

        means, quats, scales = self._gaussians(frame)
        viewmats, Ks = stack_cameras([frame.camera], device=self.device)
        colors, alphas, _ = rasterize(means, quats, scales, torch.sigmoid(self.opacity_logit),
                                      torch.sigmoid(self.color_logit), viewmats, Ks, frame.camera.width,
                                      frame.camera.height, backgrounds=self.background[None],
                                      backend=str(self.cfg.render_backend))
        return colors[0], alphas[0]

    def train_step(self, sample: Sample, step: int) -> dict[str, float]:
        rgb, _ = self._render(sample.frame)
        loss = F.l1_loss(rgb, sample.image)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            psnr = -10 * torch.log10(((rgb.clamp(0, 1) - sample.image) ** 2).mean().clamp_min(1e-12))
        return {"loss": float(loss.detach()), "psnr": float(psnr)}

    @torch.no_grad()
    def render(self, frame: Frame) -> RenderOutput:
        rgb, alpha = self._render(frame)
        return RenderOutput(rgb=rgb.clamp(0, 1), alpha=alpha)

    @torch.no_grad()
    def gaussians_at(self, frame: Frame) -> FrameGaussians:
        means, quats, scales = self._gaussians(frame)
        return FrameGaussians(means, quats, scales, torch.sigmoid(self.opacity_logit), torch.sigmoid(self.color_logit))

    def num_gaussians(self) -> int:
        return int(self.cano_pos.shape[0]) if hasattr(self, "cano_pos") else 0

    @torch.no_grad()
    def geometry(self, frame: Frame) -> torch.Tensor:
        return self._gaussians(frame)[0]

    @torch.no_grad()
    def export(self, out_dir: Path, frame: Frame | None = None) -> list[Path]:
        """``gaussians_<timestep>.ply``: the posed Gaussians (default: the first training timestep)."""
        from avatarbench.methods.animatable_gaussians.method import write_gaussians_ply

        if frame is None:
            frame = next(f for f in self.subject.frames("train") if f.timestep == self.train_timesteps[0])
        means, quats, scales = self._gaussians(frame)
        return [write_gaussians_ply(Path(out_dir) / f"gaussians_{frame.timestep:05d}.ply", means,
                                    torch.sigmoid(self.color_logit), torch.sigmoid(self.opacity_logit), scales, quats)]

    def state_dict(self) -> dict[str, Any]:
        return {"color_logit": self.color_logit.detach().cpu(), "opacity_logit": self.opacity_logit.detach().cpu(),
                "log_scale": self.log_scale.detach().cpu(), "cano_pos": self.cano_pos.cpu(),
                "lbs_weights": self.lbs_weights.cpu(), "cano_quat": self.cano_quat.cpu(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["cano_pos"].shape != self.cano_pos.shape:
            raise ConfigError(f"lbs_gaussians: checkpoint has {state['cano_pos'].shape[0]} Gaussians, the config "
                              f"{self.cano_pos.shape[0]} (model.num_gaussians changed?)")
        with torch.no_grad():
            self.color_logit.copy_(state["color_logit"])
            self.opacity_logit.copy_(state["opacity_logit"])
            self.log_scale.copy_(state["log_scale"])
        self.cano_pos = state["cano_pos"].to(self.device)
        self.lbs_weights = state["lbs_weights"].to(self.device)
        self.cano_quat = state["cano_quat"].to(self.device)
        self.optimizer.load_state_dict(state["optimizer"])
