"""Stage 2 of GHA: dynamic Gaussians with 128-d features, deformed and coloured by six MLPs.

Per Gaussian (fixed count, no densification): canonical position ``X0`` (3), feature ``F0`` (128,
stored pre-tanh, used as ``tanh(F0)``), log-scale (3), quaternion (4, wxyz), opacity logit (1).

Per frame (``generate``), with ``lambda_exp``/``lambda_pose`` from the distance of ``X0`` to the
neutral landmarks (the exp MLPs run only where ``lambda_exp > 0``, the pose MLPs only where
``lambda_pose > 0``, as in the official code):

- colour (32 ch, no activation) = ``le exp_color(F, exp) + lp pose_color(F, PE(pose))``;
- attributes (8) = ``le exp_attributes(F, exp) + lp pose_attributes(F, PE(pose))``, split into
  d_scale (3), d_rotation (4), d_opacity (1), each times ``attributes_scale`` (0.2) and added to
  the log-scale / quaternion / opacity logit;
- ``X = X0 + deform_scale (le exp_deform(PE(X0), exp) + lp pose_deform(PE(X0), PE(pose)))``
  (both MLPs take the canonical ``X0``) -- or, for the ``lbs_deform`` ablation, ``X0`` plus the
  displacement of its k nearest FLAME vertices under the frame's expression/jaw/eyes;
- world: ``means = S X R^T + T``, ``quats = q(R) * normalize(q)``, ``scales = exp(log s) S``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avatarbench.render.binding import quat_multiply_wxyz, rotmat_to_quat_wxyz

from .mesh_head import BlendConfig
from .mlps import SkipMLP, encoded_dim, positional_encoding


@dataclass
class GaussianFrame:
    """Gaussians of one frame, ready for the renderer.

    Attributes:
        means (N, 3), quats (N, 4) wxyz, scales (N, 3) activated, opacities (N,), colors (N, C),
        canonical (N, 3) deformed positions before the rigid transform.
    """

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    canonical: torch.Tensor


class GaussianHead(nn.Module):
    """The six dynamic MLPs and (after :meth:`init_points`) the per-Gaussian parameters.

    Args:
        exp_dim: expression code width; feature_dim 128; color_dim 32.
        *_hidden: hidden widths (GHA: exp_color [256, 256], pose_color [128],
            exp_attributes [256, 256, 256], pose_attributes [128, 128], exp_deform [256]*5,
            pose_deform [256, 256]).
    """

    def __init__(self, exp_dim: int, *, exp_color_hidden, pose_color_hidden, exp_attributes_hidden,
                 pose_attributes_hidden, exp_deform_hidden, pose_deform_hidden, feature_dim: int = 128,
                 color_dim: int = 32, n_freqs: int = 4, deform_scale: float = 0.3, attributes_scale: float = 0.2,
                 pose_dim: int = 6):
        super().__init__()
        self.n_freqs = int(n_freqs)
        self.deform_scale = float(deform_scale)
        self.attributes_scale = float(attributes_scale)
        self.feature_dim = int(feature_dim)
        pe_x, pe_p = encoded_dim(3, n_freqs), encoded_dim(pose_dim, n_freqs)
        self.exp_color = SkipMLP([feature_dim + exp_dim, *exp_color_hidden, color_dim], None)
        self.pose_color = SkipMLP([feature_dim + pe_p, *pose_color_hidden, color_dim], None)
        self.exp_attributes = SkipMLP([feature_dim + exp_dim, *exp_attributes_hidden, 8], None)
        self.pose_attributes = SkipMLP([feature_dim + pe_p, *pose_attributes_hidden, 8], None)
        self.exp_deform = SkipMLP([pe_x + exp_dim, *exp_deform_hidden, 3], "tanh")
        self.pose_deform = SkipMLP([pe_x + pe_p, *pose_deform_hidden, 3], "tanh")
        self.resize(0)

    # ------------------------------------------------------------------ parameters
    def resize(self, n: int) -> None:
        """(Re)create empty per-Gaussian parameters for ``n`` Gaussians (before a state load)."""
        dev = self.exp_color.layers[0].weight.device
        self.xyz = nn.Parameter(torch.zeros(n, 3, device=dev))
        self.feature = nn.Parameter(torch.zeros(n, self.feature_dim, device=dev))
        self.scales = nn.Parameter(torch.zeros(n, 3, device=dev))
        self.rotation = nn.Parameter(torch.zeros(n, 4, device=dev))
        self.opacity = nn.Parameter(torch.zeros(n, 1, device=dev))
        self.register_buffer("landmarks", torch.zeros(0, 3, device=dev))
        # lbs_deform ablation: k nearest FLAME vertices and inverse-distance weights per Gaussian
        self.register_buffer("lbs_idx", torch.zeros(0, 4, dtype=torch.long, device=dev))
        self.register_buffer("lbs_w", torch.zeros(0, 4, device=dev))

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])

    @torch.no_grad()
    def init_points(self, xyz: torch.Tensor, feature: torch.Tensor, landmarks: torch.Tensor,
                    init_opacity: float = 0.3, knn_k: int = 3) -> None:
        """3DGS-style initialisation: identity rotation, log of sqrt(mean squared distance to the
        3 nearest neighbours) for all three scales, opacity ``init_opacity``.

        xyz: (N, 3) canonical; feature: (N, F) pre-tanh; landmarks: (G, 3)."""
        from avatarbench.geometry.knn import mean_knn_distance

        n = xyz.shape[0]
        self.resize(n)
        dev = self.xyz.device
        self.xyz.copy_(xyz)
        self.feature.copy_(feature)
        d2 = mean_knn_distance(xyz.float(), k=min(knn_k, max(1, n - 1)), squared=True).clamp_min(1e-7)
        self.scales.copy_(torch.log(torch.sqrt(d2))[:, None].expand(n, 3))
        self.rotation.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0], device=dev).expand(n, 4))
        p = float(init_opacity)
        self.opacity.fill_(torch.logit(torch.tensor(p)).item())
        self.landmarks = landmarks.detach().clone().to(dev)

    @torch.no_grad()
    def init_lbs(self, flame_neutral: torch.Tensor, k: int = 4) -> None:
        """lbs_deform ablation: bind each Gaussian to its k nearest neutral FLAME vertices
        (canonical units) with normalised inverse-distance weights."""
        from avatarbench.geometry.knn import knn

        d, idx = knn(self.xyz.detach(), flame_neutral, k, squared=False)
        w = 1.0 / d.clamp_min(1e-6)
        self.lbs_idx = idx
        self.lbs_w = w / w.sum(1, keepdim=True)

    def load_points_state(self, state: dict) -> None:
        """Resize to the saved Gaussian count, then load (``state`` = this module's state_dict)."""
        self.resize(int(state["xyz"].shape[0]))
        self.landmarks = state["landmarks"].clone().to(self.xyz.device)
        self.lbs_idx = state["lbs_idx"].clone().to(self.xyz.device)
        self.lbs_w = state["lbs_w"].clone().to(self.xyz.device)
        self.load_state_dict(state)

    # ------------------------------------------------------------------ forward
    def generate(self, exp: torch.Tensor, pose: torch.Tensor, R: torch.Tensor, T: torch.Tensor, S: torch.Tensor,
                 blend: BlendConfig, deformation: str = "mlp", flame_disp: torch.Tensor | None = None) -> GaussianFrame:
        """Gaussians at one frame. exp (E,), pose (6,), R (3, 3), T (3,), S ().

        Args:
            deformation: ``"mlp"`` (GHA) or ``"lbs"`` (ablation; needs ``flame_disp`` (V, 3), the
                canonical displacement of the FLAME vertices at this frame).
        """
        x0 = self.xyz
        n = x0.shape[0]
        feat = torch.tanh(self.feature)
        ew, pw = blend.weights(x0, self.landmarks)
        ei = torch.nonzero(ew[:, 0] > 0).reshape(-1)
        pi = torch.nonzero(pw[:, 0] > 0).reshape(-1)
        pe_pose = positional_encoding(pose, self.n_freqs)

        def exp_in(rows):
            return torch.cat([feat[rows], exp.expand(rows.numel(), -1)], -1)

        def pose_in(rows):
            return torch.cat([feat[rows], pe_pose.expand(rows.numel(), -1)], -1)

        c_dim = self.exp_color.dims[-1]
        color = x0.new_zeros((n, c_dim))
        attr = x0.new_zeros((n, 8))
        delta = x0.new_zeros((n, 3))
        if ei.numel():
            xi = exp_in(ei)
            color = color.index_add(0, ei, self.exp_color(xi) * ew[ei])
            attr = attr.index_add(0, ei, self.exp_attributes(xi) * ew[ei])
        if pi.numel():
            xp = pose_in(pi)
            color = color.index_add(0, pi, self.pose_color(xp) * pw[pi])
            attr = attr.index_add(0, pi, self.pose_attributes(xp) * pw[pi])
        if deformation == "mlp":
            pe_x = positional_encoding(x0, self.n_freqs)
            if ei.numel():
                d = self.exp_deform(torch.cat([pe_x[ei], exp.expand(ei.numel(), -1)], -1))
                delta = delta.index_add(0, ei, d * ew[ei])
            if pi.numel():
                d = self.pose_deform(torch.cat([pe_x[pi], pe_pose.expand(pi.numel(), -1)], -1))
                delta = delta.index_add(0, pi, d * pw[pi])
            x = x0 + delta * self.deform_scale
        elif deformation == "lbs":
            if flame_disp is None or self.lbs_idx.shape[0] != n:
                raise RuntimeError("lbs deformation needs init_lbs() and the frame's FLAME displacement")
            x = x0 + (flame_disp[self.lbs_idx] * self.lbs_w[..., None]).sum(1)
        else:
            raise ValueError(f"deformation must be 'mlp' or 'lbs', got {deformation!r}")

        a = attr * self.attributes_scale
        log_scales = self.scales + a[:, 0:3]
        rot = torch.nn.functional.normalize(self.rotation + a[:, 3:7], dim=-1)
        opacity = torch.sigmoid(self.opacity + a[:, 7:8])[:, 0]

        means = S * x @ R.T + T
        quats = quat_multiply_wxyz(rotmat_to_quat_wxyz(R).expand(n, 4), rot)
        scales = torch.exp(log_scales) * S
        return GaussianFrame(means=means, quats=quats, scales=scales, opacities=opacity, colors=color, canonical=x)

    def copy_from_mesh_head(self, mesh_head) -> None:
        """Stage-2 handoff: copy the exp/pose colour and deformation MLP weights of stage 1."""
        for name in ("exp_color", "pose_color", "exp_deform", "pose_deform"):
            src, dst = getattr(mesh_head, name), getattr(self, name)
            if src.dims != dst.dims:
                raise ValueError(f"{name}: stage-1 dims {src.dims} != stage-2 dims {dst.dims}")
            dst.load_state_dict(src.state_dict())
