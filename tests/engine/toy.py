"""A toy method and subject for engine tests (no renderer, no body model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from avatarbench.data.camera import Camera
from avatarbench.data.images import save_png
from avatarbench.data.subject import Frame, Subject
from avatarbench.engine.method import AvatarMethod, RenderOutput, Stage


def toy_subject(root: Path, n_t: int = 3, n_c: int = 2, size=(8, 6)) -> Subject:
    w, h = size
    cams = {c: Camera.from_intrinsics(10.0, 10.0, w / 2, h / 2, w, h, torch.eye(4), id=c) for c in range(n_c)}
    frames = {"train": [], "novel_view": [], "self_reenact": []}
    rng = np.random.default_rng(0)
    for t in range(n_t):
        for c in range(n_c + 1):
            path = root / f"img_{t}_{c}.png"
            save_png(path, rng.random((h, w, 3)))
            cam = cams.get(c, cams[0])
            split = "train" if c < n_c else "novel_view"
            frames[split].append(Frame("toy", "SEQ", t, cam, path, None, {"x": np.array([t], np.float32)}))
    return Subject("toy", "head", root, cams, frames, body_model="flame")


class ToyMethod(AvatarMethod):
    """Fits a per-pixel image with Adam and injects RNG noise, so resume must restore RNG state."""

    name = "toy"

    def __init__(self, cfg, subject, device, iterations=10):
        super().__init__(cfg, subject, device)
        self.iterations = iterations

    def stages(self):
        return [Stage("a", self.iterations // 2), Stage("b", self.iterations - self.iterations // 2)]

    def setup(self, train_frames):
        cam = train_frames[0].camera
        self.img = torch.nn.Parameter(torch.zeros(cam.height, cam.width, 3))
        self.opt = torch.optim.Adam([self.img], lr=0.05)

    def train_step(self, sample, step):
        noise = 0.01 * torch.randn_like(self.img)
        loss = ((self.img + noise - sample.image) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach())}

    @torch.no_grad()
    def render(self, frame):
        return RenderOutput(rgb=self.img.clamp(0, 1).clone())

    def state_dict(self):
        return {"img": self.img.detach().clone(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.img.copy_(state["img"])
        self.opt.load_state_dict(state["opt"])
