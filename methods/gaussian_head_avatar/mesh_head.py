"""Stage 1 of GHA: the geometry-guided mesh head (DMTet SDF + expression/pose MLPs).

Per frame (``reconstruct``):

1. the geometry network gives SDF, tet-vertex offset and a 128-d feature at every tet-grid vertex;
   marching tetrahedra extracts the canonical neutral surface ``X0`` carrying the features;
2. blending weights ``lambda_exp``, ``lambda_pose`` from the distance of ``X0`` to the learnable
   neutral landmarks (guide points);
3. colour (32 channels, sigmoid) = ``lambda_exp * exp_color(F, exp) + lambda_pose * pose_color(F, PE(pose))``;
4. ``X1 = X0 + 0.3 lambda_exp exp_deform(PE(X0), exp)``, ``X2 = X1 + 0.3 lambda_pose pose_deform(PE(X1), PE(pose))``;
5. ``world = S X2 R^T + T``.

The mesh is drawn through the shared Gaussian renderer as surface-bound Gaussians
(:func:`render_mesh_splats`): one flat Gaussian per triangle in the triangle's frame (binding
utility), so silhouettes are soft and gradients reach the vertex positions and so the SDF.

Efficiency: the SDF is first evaluated without gradients on the whole grid; the network is then
run with gradients only on the vertices of tets the surface crosses (the only ones marching
tetrahedra reads), which gives identical values and gradients at a fraction of the memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blending import blend_weights
from .geometry_net import GeometryNet
from .marching_tets import SurfaceMesh, crossing_tets, marching_tets
from .mlps import SkipMLP, encoded_dim, positional_encoding
from .tetgrid import TetGrid


@dataclass
class BlendConfig:
    """Blending thresholds (see :mod:`.blending`; defaults: the official code's squared form)."""

    t1: float = 0.1
    t2: float = 0.25
    head_length: float = 1.0
    mode: str = "squared"

    def weights(self, points: torch.Tensor, guides: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ew, pw, _ = blend_weights(points, guides, self.t1, self.t2, self.head_length, self.mode)
        return ew, pw


@dataclass
class MeshFrame:
    """A reconstructed stage-1 mesh at one frame.

    Attributes:
        canonical: (M, 3) neutral canonical vertices X0; deformed: (M, 3) X2; world: (M, 3).
        faces: (F, 3); colors: (M, C) in (0, 1); features: (M, 128).
        exp_deform, pose_deform: (M, 3) raw MLP displacements (for the offset loss).
    """

    canonical: torch.Tensor
    deformed: torch.Tensor
    world: torch.Tensor
    faces: torch.Tensor
    colors: torch.Tensor
    features: torch.Tensor
    exp_deform: torch.Tensor
    pose_deform: torch.Tensor


class MeshHead(nn.Module):
    """Geometry + expression/pose colour and deformation networks of stage 1.

    Args:
        exp_dim: expression code width (109 with FLAME expr + jaw + eyes).
        landmarks: (G, 3) initial canonical neutral guide points (learnable).
        geo_hidden, exp_color_hidden, pose_color_hidden, exp_deform_hidden, pose_deform_hidden:
            hidden widths (GHA: [256]*5, [256, 256], [128], [256]*5, [256, 256]).
        feature_dim, color_dim: 128 and 32 in GHA.
        n_freqs: PE frequencies (4).
        deform_scale: 0.3.
    """

    def __init__(self, exp_dim: int, landmarks: torch.Tensor, *, geo_hidden, exp_color_hidden, pose_color_hidden,
                 exp_deform_hidden, pose_deform_hidden, feature_dim: int = 128, color_dim: int = 32,
                 n_freqs: int = 4, deform_scale: float = 0.3, pose_dim: int = 6):
        super().__init__()
        self.n_freqs = int(n_freqs)
        self.deform_scale = float(deform_scale)
        pe_x, pe_p = encoded_dim(3, n_freqs), encoded_dim(pose_dim, n_freqs)
        self.geo = GeometryNet(list(geo_hidden), feature_dim, n_freqs)
        self.exp_color = SkipMLP([feature_dim + exp_dim, *exp_color_hidden, color_dim], "sigmoid")
        self.pose_color = SkipMLP([feature_dim + pe_p, *pose_color_hidden, color_dim], "sigmoid")
        self.exp_deform = SkipMLP([pe_x + exp_dim, *exp_deform_hidden, 3], "tanh")
        self.pose_deform = SkipMLP([pe_x + pe_p, *pose_deform_hidden, 3], "tanh")
        self.landmarks = nn.Parameter(landmarks.clone().float())

    # ------------------------------------------------------------------ geometry
    def offset_scale(self, grid: TetGrid) -> float:
        """Largest tet-vertex displacement: half a grid cell."""
        return 0.5 * grid.cell_size

    def extract(self, grid: TetGrid, chunk: int = 262144) -> SurfaceMesh:
        """Canonical neutral surface (differentiable when grad is enabled).

        Returns a :class:`SurfaceMesh` with ``feats`` = the 128-d vertex features."""
        with torch.no_grad():
            sdf_all = self.geo.sdf(grid.verts, chunk)
            tv = grid.tets[crossing_tets(grid.tets, sdf_all)]
        if tv.shape[0] == 0:
            z = grid.verts.new_zeros((0, 3))
            return SurfaceMesh(z, grid.tets.new_zeros((0, 3)), grid.verts.new_zeros((0, self.geo.feature_dim)),
                               grid.tets.new_zeros((0, 2)), grid.verts.new_zeros((0,)))
        active, local = torch.unique(tv, return_inverse=True)
        x = grid.verts[active]
        if torch.is_grad_enabled() or x.shape[0] <= chunk:
            sdf, off, feat = self.geo(x)
        else:
            outs = [self.geo(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)]
            sdf, off, feat = (torch.cat(o) for o in zip(*outs))
        pos = x + torch.tanh(off) * self.offset_scale(grid)
        return marching_tets(pos, local.reshape(-1, 4), sdf, feat)

    def sdf_at(self, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) -> (N,) SDF (differentiable)."""
        return self.geo(points)[0]

    # ------------------------------------------------------------------ dynamics
    def deform_landmarks(self, exp: torch.Tensor, grid: TetGrid) -> torch.Tensor:
        """Neutral landmarks moved by the tet offset field and the expression deformation
        (GHA's ``deform``; the blend weight of a landmark is 1). exp: (E,) -> (G, 3)."""
        lm = self.landmarks
        _, off, _ = self.geo(lm)
        x = lm + torch.tanh(off) * self.offset_scale(grid)
        inp = torch.cat([positional_encoding(x, self.n_freqs), exp.expand(x.shape[0], -1)], -1)
        return x + self.exp_deform(inp) * self.deform_scale

    def reconstruct(self, grid: TetGrid, exp: torch.Tensor, pose: torch.Tensor, R: torch.Tensor, T: torch.Tensor,
                    S: torch.Tensor, blend: BlendConfig, mesh: SurfaceMesh | None = None) -> MeshFrame:
        """The mesh at one frame. exp (E,), pose (6,), R (3, 3), T (3,), S ()."""
        mesh = mesh if mesh is not None else self.extract(grid)
        x0, feat = mesh.verts, mesh.feats
        n = x0.shape[0]
        ew, pw = blend.weights(x0, self.landmarks)
        pe_pose = positional_encoding(pose, self.n_freqs).expand(n, -1)
        e = exp.expand(n, -1)
        color = ew * self.exp_color(torch.cat([feat, e], -1)) + pw * self.pose_color(torch.cat([feat, pe_pose], -1))
        d_exp = self.exp_deform(torch.cat([positional_encoding(x0, self.n_freqs), e], -1))
        x1 = x0 + d_exp * ew * self.deform_scale
        d_pose = self.pose_deform(torch.cat([positional_encoding(x1, self.n_freqs), pe_pose], -1))
        x2 = x1 + d_pose * pw * self.deform_scale
        world = S * x2 @ R.T + T
        return MeshFrame(canonical=x0, deformed=x2, world=world, faces=mesh.faces, colors=color, features=feat,
                         exp_deform=d_exp, pose_deform=d_pose)


def render_mesh_splats(verts: torch.Tensor, faces: torch.Tensor, vert_colors: torch.Tensor, camera, *,
                       background: torch.Tensor, sigma: float = 0.5, thickness: float = 0.01,
                       opacity: float = 0.99, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Draw a triangle mesh as one flat Gaussian per face through the shared renderer.

    Each face carries a Gaussian at its centroid in the face frame ``[edge, normal, edge x normal]``
    with local scales ``(sigma, thickness, sigma)`` times the face size ``k`` (binding utility),
    and the mean colour of its three vertices.

    Args:
        verts: (M, 3) world vertices; faces: (F, 3); vert_colors: (M, C).
        camera: :class:`avatarbench.data.camera.Camera` (its width/height are the output size).
        background: (C,) colour behind the mesh.
    Returns:
        image (H, W, C), alpha (H, W, 1).
    """
    from avatarbench.data.camera import stack_cameras
    from avatarbench.render import rasterize
    from avatarbench.render.binding import face_frames, local_to_global

    device = verts.device
    C = vert_colors.shape[1]
    if faces.shape[0] == 0:
        H, W = camera.height, camera.width
        return background.expand(H, W, C).clone(), verts.new_zeros((H, W, 1))
    tri = verts[faces]
    # drop (near-)degenerate triangles: their frame is undefined
    e0 = (tri[:, 1] - tri[:, 0]).detach()
    e1 = (tri[:, 2] - tri[:, 0]).detach()
    area2 = torch.linalg.norm(torch.cross(e0, e1, dim=-1), dim=-1)
    scale2 = (e0 * e0).sum(-1) + (e1 * e1).sum(-1)
    keep = (area2 > 1e-6 * scale2) & (torch.linalg.norm(e0, dim=-1) > 1e-9)
    faces = faces[keep]
    centroid, Rf, k = face_frames(verts, faces)
    n = faces.shape[0]
    mu = verts.new_zeros((n, 3))
    quat = torch.tensor([1.0, 0.0, 0.0, 0.0], device=device).expand(n, 4)
    log_s = torch.log(torch.tensor([sigma, thickness, sigma], device=device)).expand(n, 3)
    means, quats, scales = local_to_global(mu, quat, log_s, torch.arange(n, device=device), centroid, Rf, k)
    colors = vert_colors[faces].mean(dim=1)
    viewmats, Ks = stack_cameras([camera], device=device)
    img, alpha, _ = rasterize(means, quats, scales, torch.full((n,), opacity, device=device), colors, viewmats, Ks,
                              camera.width, camera.height, backgrounds=background[None], backend=backend)
    return img[0], alpha[0]
