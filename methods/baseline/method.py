"""Reference baseline ``flame_gaussians``: one Gaussian per FLAME face, fixed geometry.

Each face of the tracked FLAME mesh (with teeth) carries one flat Gaussian at its centroid,
oriented with the face frame (shared binding utility) and sized by the face scale k -- a
textured-mesh stand-in. The mesh of every frame is the training identity (``shape``,
``static_offset`` of the first training timestep) posed by the frame's motion. Only colour and opacity are learned (L1 loss, Adam); there is no
densification and no FLAME fine-tuning. It proves the platform end to end and is the floor that
the paper methods must beat.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from avatarbench.data.camera import stack_cameras
from avatarbench.data.subject import Frame
from avatarbench.engine.method import AvatarMethod, FrameGaussians, RenderOutput, Sample, Stage


#: per-subject FLAME identity parameters, taken from the training data only
IDENTITY_KEYS = ("shape", "static_offset")


class FlameGaussians(AvatarMethod):
    name = "flame_gaussians"
    kind = "head"

    def stages(self) -> list[Stage]:
        return [Stage("colour", int(self.cfg.train.iterations))]

    def setup(self, train_frames: list[Frame]) -> None:
        from avatarbench.bodymodels.flame import load_flame

        self.flame = load_flame(self.subject.body_model_path, teeth=True).to(self.device)
        n_faces = self.flame.faces.shape[0]
        init = float(self.cfg.model.init_color)
        self.color_logit = torch.nn.Parameter(torch.full((n_faces, 3), math.log(init / (1 - init)), device=self.device))
        op = float(self.cfg.model.init_opacity)
        self.opacity_logit = torch.nn.Parameter(torch.full((n_faces,), math.log(op / (1 - op)), device=self.device))
        thick = math.log(float(self.cfg.model.normal_thickness))
        # local scale axes follow the face frame [edge, normal, edge x normal]: flat along the normal
        self.log_scale_local = torch.tensor([0.0, thick, 0.0], device=self.device).expand(n_faces, 3)
        self.optimizer = torch.optim.Adam([{"params": [self.color_logit], "lr": float(self.cfg.train.lr_color)},
                                           {"params": [self.opacity_logit], "lr": float(self.cfg.train.lr_opacity)}])
        self.background = torch.tensor(self.subject.background, device=self.device, dtype=torch.float32)
        # the identity of the first training timestep drives every render; a frame contributes its
        # motion only (as GaussianAvatars: one tracked identity for all timesteps)
        first = min(train_frames, key=lambda f: f.timestep).driving_tensors(self.device)
        self.identity = {k: first[k] for k in IDENTITY_KEYS if k in first}

    def _gaussians(self, frame: Frame):
        from avatarbench.render.binding import face_frames, local_to_global

        drv = {k: v for k, v in frame.driving_tensors(self.device).items() if k not in IDENTITY_KEYS}
        out = self.flame.forward_dict({**drv, **self.identity})
        centroid, R, k = face_frames(out.verts[0], self.flame.faces)
        n = centroid.shape[0]
        zeros = torch.zeros(n, 3, device=self.device)
        quat = torch.tensor([1.0, 0.0, 0.0, 0.0], device=self.device).expand(n, 4)
        binding = torch.arange(n, device=self.device)
        return local_to_global(zeros, quat, self.log_scale_local, binding, centroid, R, k)

    def _render(self, frame: Frame):
        from avatarbench.render import rasterize

        means, quats, scales = self._gaussians(frame)
        viewmats, Ks = stack_cameras([frame.camera], device=self.device)
        colors, alphas, _ = rasterize(means, quats, scales, torch.sigmoid(self.opacity_logit),
                                      torch.sigmoid(self.color_logit), viewmats, Ks, frame.camera.width,
                                      frame.camera.height, backgrounds=self.background[None])
        return colors[0], alphas[0]

    def train_step(self, sample: Sample, step: int) -> dict[str, float]:
        rgb, _ = self._render(sample.frame)
        loss = F.l1_loss(rgb, sample.image)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach())}

    @torch.no_grad()
    def render(self, frame: Frame) -> RenderOutput:
        rgb, alpha = self._render(frame)
        return RenderOutput(rgb=rgb.clamp(0, 1), alpha=alpha)

    @torch.no_grad()
    def gaussians_at(self, frame: Frame) -> FrameGaussians:
        means, quats, scales = self._gaussians(frame)
        return FrameGaussians(means, quats, scales, torch.sigmoid(self.opacity_logit), torch.sigmoid(self.color_logit))

    def num_gaussians(self) -> int:
        return int(self.color_logit.shape[0])

    @torch.no_grad()
    def geometry(self, frame: Frame) -> torch.Tensor:
        return self._gaussians(frame)[0]

    def state_dict(self) -> dict:
        return {"color_logit": self.color_logit.detach().cpu(), "opacity_logit": self.opacity_logit.detach().cpu(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.color_logit.copy_(state["color_logit"])
            self.opacity_logit.copy_(state["opacity_logit"])
        self.optimizer.load_state_dict(state["optimizer"])
