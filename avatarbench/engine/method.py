"""The one interface between the harness and an avatar method.

Lifecycle (driven by :mod:`avatarbench.engine.trainer`)::

    m = MethodClass(cfg, subject, device)      # cfg: the method's resolved OmegaConf node
    m.setup(train_frames)                      # build the model from the training data
    m.load_state_dict(ckpt)                    # only when resuming
    for step in range(start, m.total_iterations()):
        logs = m.train_step(sample, step)      # one optimiser step on one Sample (batch 1)
    out = m.render(frame)                      # any Frame: train, novel_view, self/cross-reenact

Rules every method follows (so that numbers are comparable):

- All Gaussian splatting goes through :func:`avatarbench.render.rasterize`.
- ``render`` may use per-timestep fine-tuned driving parameters only for timesteps it was
  trained on and only when ``frame.driver is None``; otherwise it uses ``frame.driving``.
- ``state_dict`` holds everything needed for a bit-exact resume: parameters, optimiser and
  densification-strategy state, fine-tuned driving parameters and any RNG state the method owns.
- Densification goes through a strategy object with gsplat's Strategy API
  (``check_sanity``, ``step_pre_backward``, ``step_post_backward``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from avatarbench.data.subject import Frame, Subject


@dataclass
class Stage:
    """A named training stage with its iteration count (e.g. GHA: ``mesh`` then ``gaussian``)."""

    name: str
    iterations: int


@dataclass
class Sample:
    """One training sample handed to :meth:`AvatarMethod.train_step`.

    Attributes:
        frame: the frame (camera, driving parameters, timestep).
        image: (H, W, 3) float32 ground truth in [0, 1], composited on the subject's background,
            on the method's device.
        mask: (H, W, 1) float32 foreground mask or None.
    """

    frame: Frame
    image: torch.Tensor
    mask: torch.Tensor | None = None


@dataclass
class RenderOutput:
    """What :meth:`AvatarMethod.render` returns.

    Attributes:
        rgb: (H, W, 3) float32 in [0, 1], composited on the subject's background.
        alpha: (H, W, 1) accumulated opacity, or None.
        extras: anything else (e.g. ``rgb_lowres`` for super-resolution methods, ``depth``).
    """

    rgb: torch.Tensor
    alpha: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class FrameGaussians:
    """The 3D Gaussians a method rasterizes at one frame (for viewers and exports).

    Attributes:
        means: (N, 3) world positions.
        quats: (N, 4) wxyz rotations (need not be normalised).
        scales: (N, 3) activated scales (standard deviations).
        opacities: (N,) activated opacities in [0, 1].
        colors: (N, 3) RGB when ``sh_degree`` is None, else (N, K, 3) SH coefficients evaluated
            as :func:`avatarbench.render.sh.eval_sh` does (view direction = camera centre -> mean).
        sh_degree: None or the SH degree the method renders with.
    """

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    sh_degree: int | None = None


class AvatarMethod(ABC):
    """Base class of all avatar methods. See the module docstring for the lifecycle."""

    #: registry name, e.g. ``"gaussian_avatars"``
    name: str = ""
    #: ``"head"`` or ``"body"``: which subjects the method accepts
    kind: str = "head"

    def __init__(self, cfg, subject: Subject, device: torch.device):
        self.cfg = cfg
        self.subject = subject
        self.device = torch.device(device)

    # -- training ---------------------------------------------------------------------------
    @abstractmethod
    def stages(self) -> list[Stage]:
        """The training stages, in order. Their iterations add up to :meth:`total_iterations`."""

    def total_iterations(self) -> int:
        return sum(s.iterations for s in self.stages())

    def stage_at(self, step: int) -> Stage:
        """The stage that global step ``step`` (0-based) belongs to."""
        acc = 0
        for s in self.stages():
            acc += s.iterations
            if step < acc:
                return s
        return self.stages()[-1]

    @abstractmethod
    def setup(self, train_frames: list[Frame]) -> None:
        """Build the model (and optimisers) from the training frames. Called once per process."""

    @abstractmethod
    def train_step(self, sample: Sample, step: int) -> dict[str, float]:
        """One optimisation step. Returns scalar logs (``loss`` at least)."""

    # -- inference ---------------------------------------------------------------------------
    @abstractmethod
    def render(self, frame: Frame) -> RenderOutput:
        """Render ``frame.camera`` under ``frame.driving`` (no gradients needed)."""

    def gaussians_at(self, frame: Frame) -> FrameGaussians | None:
        """The Gaussians :meth:`render` rasterizes for ``frame`` (their colours may depend on
        ``frame.camera``), or None when the image is not a plain splatting of 3D Gaussians
        (e.g. a feature map decoded by a network). Used by ``avatarbench view``."""
        return None

    def num_gaussians(self) -> int:
        """Current number of Gaussians (for logs and benchmarks)."""
        return 0

    # -- state -------------------------------------------------------------------------------
    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit-exactly (tensors on CPU are fine)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (called after :meth:`setup`)."""

    def export(self, out_dir: Path, frame: Frame | None = None) -> list[Path]:
        """Write method-specific artefacts (e.g. a 3DGS PLY). Returns the written paths."""
        return []

    def activity(self) -> dict[str, int]:
        """How often each regulariser / density-control rule acted during training (written to
        results.json ``train.activity``; ``avatarbench table --ablations`` marks a variant whose
        removed component never acted). Empty when the method records none."""
        return {}

    def geometry(self, frame: Frame) -> torch.Tensor | None:
        """(N, 3) points describing the avatar's surface at ``frame`` (Gaussian means or mesh
        vertices), used for geometry metrics against a ground-truth mesh. None if not applicable."""
        return None
