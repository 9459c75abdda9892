"""Gaussian Head Avatar (Xu et al., CVPR 2024) as an avatarbench method.

Two stages (``stages()``), both read from ``cfg.method``:

- ``mesh`` (:mod:`.mesh_head`): sphere-initialised DMTet SDF + expression/pose colour and
  deformation MLPs, fitted with RGB, silhouette, landmark-deformation, offset, landmark-SDF and
  Laplacian losses; 4 views of one timestep per step.
- ``gaussian`` (:mod:`.gaussian_head`): Gaussians on the neutral mesh vertices (grid refined to
  ``gaussian.grid_res``) plus mouth points, six MLPs (colour/deform copied from stage 1), a
  32-channel feature map at 1/4 of the camera resolution and the x4 super-resolution network.

Conditioning follows the suite's FLAME protocol (:mod:`.conditioning`). Every deviation from the
official code is listed in docs/methods/gaussian_head_avatar.md.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from avatarbench.data.subject import Frame
from avatarbench.engine.method import AvatarMethod, RenderOutput, Sample, Stage
from avatarbench.errors import ConfigError

from .conditioning import FlameConditioning, HeadCondition
from .gaussian_head import GaussianFrame, GaussianHead
from .init_points import mouth_box_points, subdivide_midpoint
from .losses import (PerceptualLoss, laplacian_loss, offset_loss, random_crop_pair, random_scale_crop, resize_chw,
                     silhouette_loss)
from .mesh_head import BlendConfig, MeshFrame, MeshHead, render_mesh_splats
from .super_resolution import SuperResolution
from .tetgrid import kuhn_tet_grid


def _hwc_to_bchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(2, 0, 1)[None]


def _bchw_to_hwc(x: torch.Tensor) -> torch.Tensor:
    return x[0].permute(1, 2, 0)


class GaussianHeadAvatar(AvatarMethod):
    name = "gaussian_head_avatar"
    kind = "head"

    # ------------------------------------------------------------------ stages
    def stages(self) -> list[Stage]:
        return [Stage("mesh", int(self.cfg.mesh.iterations)), Stage("gaussian", int(self.cfg.gaussian.iterations))]

    # ------------------------------------------------------------------ setup
    def setup(self, train_frames: list[Frame]) -> None:
        from avatarbench.bodymodels.flame import load_flame

        cfg, mcfg, gcfg = self.cfg, self.cfg.mesh, self.cfg.gaussian
        if gcfg.init not in ("geometry", "flame"):
            raise ConfigError(f"method.gaussian.init={gcfg.init!r}: expected 'geometry' or 'flame'")
        if gcfg.deformation not in ("mlp", "lbs"):
            raise ConfigError(f"method.gaussian.deformation={gcfg.deformation!r}: expected 'mlp' or 'lbs'")
        if not train_frames:
            raise ConfigError("gaussian_head_avatar: no training frames")
        dev = self.device
        # a method-owned RNG (view sampling, augmentation, crops, mouth points), seeded from the
        # engine's global seed and saved in the state for bit-exact resume
        self.gen = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 31 - 1, (1,)).item()))

        self.flame = load_flame(self.subject.body_model_path, teeth=True).to(dev)
        identity = dict(train_frames[0].driving)
        for k in ("shape", "static_offset"):
            if k in (self.subject.canonical or {}):
                identity[k] = self.subject.canonical[k]
        c = cfg.conditioning
        self.cond = FlameConditioning(self.flame, identity, n_expr=int(c.n_expr), n_guides=int(c.n_guides),
                                      canonical_unit=float(c.canonical_unit), use_jaw=bool(c.use_jaw),
                                      use_eyes=bool(c.use_eyes))
        bound = float(mcfg.grid_bound)
        need = float(self.cond.half_extent.max())
        if need >= bound:
            raise ConfigError(f"method.mesh.grid_bound={bound}: the neutral head reaches {need:.3f} canonical units "
                              f"({c.canonical_unit} m each) from the grid centre; expected a bound above that")
        b = cfg.blend
        head_len = self.cond.head_length if str(b.head_length) == "auto" else float(b.head_length)
        self.blend = BlendConfig(float(b.t1), float(b.t2), head_len, str(b.mode))
        self.background = torch.tensor(self.subject.background, dtype=torch.float32, device=dev)

        self.train_frames = list(train_frames)
        by_t: dict[int, list[Frame]] = defaultdict(list)
        for f in self.train_frames:
            by_t[f.timestep].append(f)
        self.frames_by_timestep = dict(by_t)
        self.t_index = {t: i for i, t in enumerate(sorted(by_t))}

        # networks: all built now, so their initialisation depends only on the seed
        neutral_guides = self.cond.neutral_canonical[self.cond.guide_ids]
        mh = mcfg.mlp
        self.mesh_head = MeshHead(self.cond.exp_dim, neutral_guides, geo_hidden=list(mh.geo),
                                  exp_color_hidden=list(mh.exp_color), pose_color_hidden=list(mh.pose_color),
                                  exp_deform_hidden=list(mh.exp_deform), pose_deform_hidden=list(mh.pose_deform),
                                  feature_dim=int(cfg.feature_dim), color_dim=int(cfg.color_dim),
                                  n_freqs=int(c.pe_freqs), deform_scale=float(mcfg.deform_scale)).to(dev)
        gh = gcfg.mlp
        self.gaussian_head = GaussianHead(self.cond.exp_dim, exp_color_hidden=list(gh.exp_color),
                                          pose_color_hidden=list(gh.pose_color),
                                          exp_attributes_hidden=list(gh.exp_attributes),
                                          pose_attributes_hidden=list(gh.pose_attributes),
                                          exp_deform_hidden=list(gh.exp_deform), pose_deform_hidden=list(gh.pose_deform),
                                          feature_dim=int(cfg.feature_dim), color_dim=int(cfg.color_dim),
                                          n_freqs=int(c.pe_freqs), deform_scale=float(gcfg.deform_scale),
                                          attributes_scale=float(gcfg.attributes_scale)).to(dev)
        self.sr_enabled = bool(gcfg.sr.enabled)
        self.sr_factor = int(gcfg.sr.factor)
        if self.sr_factor != SuperResolution.factor:
            raise ConfigError(f"method.gaussian.sr.factor={self.sr_factor}: the GHA network upsamples by 4")
        self.sr = SuperResolution(int(cfg.color_dim), int(gcfg.sr.capacity)).to(dev) if self.sr_enabled else None
        self.delta_poses = torch.nn.Parameter(torch.zeros(len(self.t_index), 6, device=dev))

        self.grid = kuhn_tet_grid(int(mcfg.grid_res), float(mcfg.grid_bound), dev)
        self.mesh_opt = torch.optim.Adam([
            {"params": [self.mesh_head.landmarks], "lr": float(mcfg.lr_landmarks)},
            {"params": [p for n, p in self.mesh_head.named_parameters() if n != "landmarks"], "lr": float(mcfg.lr_net)},
        ])
        self.gauss_opt: torch.optim.Optimizer | None = None
        self.sphere_done = False
        self.gaussians_built = False
        w = float(gcfg.loss_weights.perceptual)
        self.perceptual = PerceptualLoss("vgg", dev) if w > 0 else None
        self.perceptual_status = self.perceptual.status if self.perceptual is not None else "disabled (weight 0)"
        self._status_logged = False

    # ------------------------------------------------------------------ conditioning
    def _condition(self, frame: Frame, refine: bool) -> tuple[HeadCondition, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Conditioning of a frame and its (possibly refined) pose code, R, T."""
        cond = self.cond.encode(frame.driving)
        idx = self.t_index.get(frame.timestep)
        use = (refine and self.gaussians_built and bool(self.cfg.gaussian.pose_refinement) and idx is not None
               and frame.driver is None and frame.subject == self.subject.name)
        if not use:
            return cond, cond.pose, cond.R, cond.T
        pose = cond.pose + self.delta_poses[idx]
        R, T = self.cond.rigid_from_pose(pose)
        return cond, pose, R, T

    def _rand(self, n: int = 1) -> torch.Tensor:
        return torch.rand(n, generator=self.gen)

    # ------------------------------------------------------------------ stage 1
    def _mesh_camera(self, camera):
        res = int(self.cfg.mesh.resolution)
        s = res / max(camera.width, camera.height)
        return camera.resized(max(1, round(camera.width * s)), max(1, round(camera.height * s)))

    def _mesh_frame(self, frame: Frame) -> MeshFrame:
        cond, pose, R, T = self._condition(frame, refine=False)
        return self.mesh_head.reconstruct(self.grid, cond.exp, pose, R, T, cond.S, self.blend)

    def _render_mesh(self, mf: MeshFrame, camera) -> tuple[torch.Tensor, torch.Tensor]:
        sp = self.cfg.mesh.splat
        return render_mesh_splats(mf.world, mf.faces, mf.colors[:, :3], camera, background=self.background,
                                  sigma=float(sp.sigma), thickness=float(sp.thickness), opacity=float(sp.opacity),
                                  backend=str(self.cfg.get("render_backend", "auto")))

    def _mesh_views(self, sample: Sample) -> list[tuple[Frame, torch.Tensor, torch.Tensor | None]]:
        """The sample plus up to ``views_per_step - 1`` other cameras of its timestep."""
        views = [(sample.frame, sample.image, sample.mask)]
        others = [f for f in self.frames_by_timestep.get(sample.frame.timestep, [])
                  if f.camera.id != sample.frame.camera.id]
        k = min(int(self.cfg.mesh.views_per_step) - 1, len(others))
        if k > 0:
            order = torch.randperm(len(others), generator=self.gen)[:k]
            for i in order.tolist():
                f = others[i]
                m = f.mask()
                views.append((f, f.image().to(self.device), m.to(self.device) if m is not None else None))
        return views

    def _mesh_step(self, sample: Sample) -> dict[str, Any]:
        if not self.sphere_done:
            self._pretrain_sphere()
        mcfg, w = self.cfg.mesh, self.cfg.mesh.loss_weights
        cond = self.cond.encode(sample.frame.driving)
        mf = self.mesh_head.reconstruct(self.grid, cond.exp, cond.pose, cond.R, cond.T, cond.S, self.blend)
        l_rgb = l_sil = 0.0
        views = self._mesh_views(sample)
        for frame, image, mask in views:
            cam = self._mesh_camera(frame.camera)
            rgb, alpha = self._render_mesh(mf, cam)
            gt = resize_chw(_hwc_to_bchw(image), (cam.height, cam.width), "area")
            l_rgb = l_rgb + F.l1_loss(_hwc_to_bchw(rgb), gt)
            if mask is not None:
                gm = resize_chw(_hwc_to_bchw(mask), (cam.height, cam.width), "area")
                l_sil = l_sil + silhouette_loss(_hwc_to_bchw(alpha), gm)
        l_rgb, l_sil = l_rgb / len(views), l_sil / len(views)
        lm_pred = self.mesh_head.deform_landmarks(cond.exp, self.grid)
        l_def = F.mse_loss(lm_pred, cond.guides)
        l_lmk = self.mesh_head.sdf_at(self.mesh_head.landmarks).abs().mean()
        l_off = offset_loss(mf.exp_deform, mf.pose_deform)
        l_lap = laplacian_loss(mf.world, mf.faces)
        loss = (float(w.rgb) * l_rgb + float(w.silhouette) * l_sil + float(w.deform) * l_def
                + float(w.offset) * l_off + float(w.landmark_sdf) * l_lmk + float(w.laplacian) * l_lap)
        self.mesh_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.mesh_opt.step()
        return {"loss": float(loss.detach()), "loss_rgb": float(l_rgb.detach()),
                "loss_sil": float(l_sil.detach()) if torch.is_tensor(l_sil) else 0.0,
                "loss_def": float(l_def.detach()), "loss_lmk": float(l_lmk.detach()),
                "loss_offset": float(l_off.detach()), "loss_lap": float(l_lap.detach()),
                "mesh_verts": int(mf.world.shape[0]), "mesh_faces": int(mf.faces.shape[0])}

    def _pretrain_sphere(self) -> None:
        sp = self.cfg.mesh.sphere_pretrain
        self.mesh_head.geo.pretrain_sphere(int(sp.steps), radius=float(sp.radius), sample_bound=float(sp.sample_bound),
                                           batch=int(sp.batch), lr=float(sp.lr), generator=self.gen)
        self.sphere_done = True

    # ------------------------------------------------------------------ handoff
    @torch.no_grad()
    def _build_gaussians(self) -> None:
        gcfg, dev = self.cfg.gaussian, self.device
        if gcfg.init == "geometry":
            if not self.sphere_done:
                self._pretrain_sphere()
            grid = kuhn_tet_grid(int(gcfg.grid_res), float(self.cfg.mesh.grid_bound), dev)
            mesh = self.mesh_head.extract(grid)
            del grid
            if mesh.verts.shape[0] == 0:
                raise RuntimeError("gaussian_head_avatar: the stage-1 SDF has no zero crossing on the grid "
                                   "(all inside or all outside); cannot initialise the Gaussians")
            xyz = mesh.verts
            feature = torch.atanh(mesh.feats.clamp(-1 + 1e-6, 1 - 1e-6))
            landmarks = self.mesh_head.landmarks.detach()
            self.gaussian_head.copy_from_mesh_head(self.mesh_head)
        else:  # FLAME-Init ablation: subdivided FLAME (without teeth), random features
            faces = self.flame.faces
            tm = getattr(self.flame, "teeth_faces_mask", None)
            if tm is not None:
                faces = faces[~torch.as_tensor(tm, device=faces.device)]
            verts = self.cond.neutral_canonical
            used = torch.unique(faces)
            remap = torch.full((verts.shape[0],), -1, dtype=torch.long, device=verts.device)
            remap[used] = torch.arange(used.numel(), device=verts.device)
            verts, faces = verts[used], remap[faces]
            for _ in range(int(gcfg.flame_init_subdivisions)):
                verts, faces = subdivide_midpoint(verts, faces)
            xyz = verts
            feature = torch.randn((xyz.shape[0], int(self.cfg.feature_dim)), generator=self.gen).to(dev) \
                * float(gcfg.flame_init_feature_std)
            landmarks = self.cond.neutral_canonical[self.cond.guide_ids]
        n_mouth = int(gcfg.mouth_points)
        if n_mouth > 0:
            mouth = self.cond.neutral_canonical[self.cond.mouth_ids]
            pts = mouth_box_points(mouth, n_mouth, self.gen)
            xyz = torch.cat([xyz, pts], 0)
            feature = torch.cat([feature, feature.new_zeros((n_mouth, feature.shape[1]))], 0)
        self.gaussian_head.init_points(xyz.float(), feature.float(), landmarks, float(gcfg.init_opacity))
        if gcfg.deformation == "lbs":
            self.gaussian_head.init_lbs(self.cond.neutral_canonical)
        self.gaussians_built = True
        self._make_gaussian_optimizer()

    def _make_gaussian_optimizer(self) -> None:
        lr = self.cfg.gaussian.lr
        gh = self.gaussian_head
        nets = [p for n, p in gh.named_parameters() if n not in ("xyz", "feature", "scales", "rotation", "opacity")]
        groups = [{"params": nets, "lr": float(lr.net)}]
        if self.sr is not None:  # official: the SR network shares lr_net (lr.sr = null)
            lr_sr = lr.get("sr", None)
            groups.append({"params": list(self.sr.parameters()), "lr": float(lr.net if lr_sr is None else lr_sr)})
        self.gauss_opt = torch.optim.Adam(groups + [
            {"params": [gh.xyz], "lr": float(lr.xyz)},
            {"params": [gh.feature], "lr": float(lr.feature)},
            {"params": [gh.scales], "lr": float(lr.scale)},
            {"params": [gh.rotation], "lr": float(lr.rotation)},
            {"params": [gh.opacity], "lr": float(lr.opacity)},
            {"params": [self.delta_poses], "lr": float(lr.delta_pose)},
        ])

    # ------------------------------------------------------------------ stage 2
    def _lowres_camera(self, camera):
        """The camera at 1/4 resolution, pixel-aligned with the full image: intrinsics divided by
        exactly 4 and size ceil(W/4) x ceil(H/4), so low-res pixel (i, j) covers full-res pixels
        4i..4i+3, 4j..4j+3 (the last row/column may reach past the image; it is cropped)."""
        from avatarbench.data.camera import Camera

        f = self.sr_factor
        K = camera.K.clone()
        K[:2] /= f
        return Camera(K=K, world_to_cam=camera.world_to_cam.clone(), width=-(-camera.width // f),
                      height=-(-camera.height // f), id=camera.id, name=camera.name)

    def _gaussian_frame(self, frame: Frame, refine: bool) -> GaussianFrame:
        cond, pose, R, T = self._condition(frame, refine)
        disp = None
        if self.cfg.gaussian.deformation == "lbs":
            disp = cond.flame_canonical - self.cond.neutral_canonical
        return self.gaussian_head.generate(cond.exp, pose, R, T, cond.S, self.blend,
                                           str(self.cfg.gaussian.deformation), disp)

    def _render_features(self, gf: GaussianFrame, camera) -> tuple[torch.Tensor, torch.Tensor]:
        """32-channel feature map (1, C, h, w) and alpha (1, 1, h, w) at ``camera``."""
        from avatarbench.data.camera import stack_cameras
        from avatarbench.render import rasterize

        C = gf.colors.shape[1]
        bg = torch.cat([self.background, torch.ones(C - 3, device=self.device)])[None]
        viewmats, Ks = stack_cameras([camera], device=self.device)
        img, alpha, _ = rasterize(gf.means, gf.quats, gf.scales, gf.opacities, gf.colors, viewmats, Ks,
                                  camera.width, camera.height, backgrounds=bg,
                                  backend=str(self.cfg.get("render_backend", "auto")))
        return img.permute(0, 3, 1, 2), alpha.permute(0, 3, 1, 2)

    def _upsample(self, feat: torch.Tensor) -> torch.Tensor:
        """(1, C, h, w) -> (1, 3, 4h, 4w): the SR network, or bilinear x4 for ``no_sr``."""
        if self.sr is not None:
            return self.sr(feat)
        h, w = feat.shape[-2:]
        return resize_chw(feat[:, :3], (h * self.sr_factor, w * self.sr_factor))

    def _gaussian_step(self, sample: Sample) -> dict[str, Any]:
        gcfg, w = self.cfg.gaussian, self.cfg.gaussian.loss_weights
        gf = self._gaussian_frame(sample.frame, refine=True)
        cam = self._lowres_camera(sample.frame.camera)
        feat, _ = self._render_features(gf, cam)
        # train on the low-res pixels that lie fully inside the image (exactly aligned, no resampling)
        f = self.sr_factor
        H, W = sample.image.shape[:2]
        h, wd = max(1, H // f), max(1, W // f)
        feat = feat[..., :h, :wd]
        gt = _hwc_to_bchw(sample.image)[..., :h * f, :wd * f]
        if gt.shape[-2:] != (h * f, wd * f):  # images smaller than the factor
            gt = resize_chw(gt, (h * f, wd * f))
        # low-resolution L1: the un-augmented render against the downsampled GT (official
        # ``loss_rgb_lr``); only the super-resolution branch sees the zoom augmentation
        gt_low = resize_chw(gt, (h, wd), "area")
        l_lr = F.l1_loss(feat[:, :3], gt_low)
        sr_in, sr_gt = feat, gt
        aug = list(gcfg.augment_scale) if gcfg.augment_scale else None
        if aug and self.sr is not None:
            s = aug[0] + (aug[1] - aug[0]) * float(self._rand())
            u = self._rand(2).tolist()
            sr_in, sr_gt = random_scale_crop(feat, gt, self.sr_factor, s, (u[0], u[1]), fill=1.0,
                                             mode=str(gcfg.get("augment_mode", "nearest")))
        hr = self._upsample(sr_in)
        l_hr = F.l1_loss(hr, sr_gt)
        loss = float(w.sr_l1) * l_hr + float(w.lowres_l1) * l_lr
        logs: dict[str, Any] = {"loss_hr": float(l_hr.detach()), "loss_lr": float(l_lr.detach())}
        if self.perceptual is not None and self.perceptual.enabled and float(w.perceptual) > 0:
            H, W = hr.shape[-2:]
            frac = float(gcfg.perceptual_crop)
            size = (min(H, max(64, math.ceil(H * frac))), min(W, max(64, math.ceil(W * frac))))
            u = self._rand(2).tolist()
            a, b = random_crop_pair(hr, sr_gt, size, (u[0], u[1]))
            l_p = self.perceptual(a, b)
            loss = loss + float(w.perceptual) * l_p
            logs["loss_lpips"] = float(l_p.detach())
        self.gauss_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.gauss_opt.step()
        logs["loss"] = float(loss.detach())
        logs["perceptual_loss_enabled"] = float(self.perceptual is not None and self.perceptual.enabled)
        if not self._status_logged:  # the full reason once per process (and always in the state)
            logs["perceptual_loss"] = self.perceptual_status
            self._status_logged = True
        return logs

    # ------------------------------------------------------------------ AvatarMethod
    def train_step(self, sample: Sample, step: int) -> dict[str, Any]:
        if self.stage_at(step).name == "mesh" and int(self.cfg.mesh.iterations) > 0:
            return self._mesh_step(sample)
        if not self.gaussians_built:
            self._build_gaussians()
        return self._gaussian_step(sample)

    @torch.no_grad()
    def render(self, frame: Frame) -> RenderOutput:
        cam = frame.camera
        if not self.gaussians_built:
            mf = self._mesh_frame(frame)
            rgb, alpha = self._render_mesh(mf, cam)
            return RenderOutput(rgb=rgb.clamp(0, 1), alpha=alpha, extras={"stage": "mesh"})
        gf = self._gaussian_frame(frame, refine=True)
        feat, alpha = self._render_features(gf, self._lowres_camera(cam))
        hr = self._upsample(feat)[..., :cam.height, :cam.width]
        alpha_hr = F.interpolate(alpha, scale_factor=self.sr_factor, mode="bilinear",
                                 align_corners=False)[..., :cam.height, :cam.width]
        return RenderOutput(rgb=_bchw_to_hwc(hr).clamp(0, 1), alpha=_bchw_to_hwc(alpha_hr).clamp(0, 1),
                            extras={"rgb_lowres": _bchw_to_hwc(feat[:, :3]).clamp(0, 1),
                                    "stage": "gaussian"})

    @torch.no_grad()
    def geometry(self, frame: Frame) -> torch.Tensor | None:
        if self.gaussians_built:
            return self._gaussian_frame(frame, refine=True).means
        return self._mesh_frame(frame).world

    @property
    def perceptual_loss_status(self) -> str:
        """``"enabled (found <backbone>)"`` or ``"disabled (<reason>)"``: the official 0.1 LPIPS-VGG
        term as this process built it (recorded in results.json and the training log)."""
        return self.perceptual_status

    def num_gaussians(self) -> int:
        return self.gaussian_head.num_points if self.gaussians_built else 0

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "generator": self.gen.get_state(),
            "sphere_done": self.sphere_done,
            "gaussians_built": self.gaussians_built,
            "mesh_head": self.mesh_head.state_dict(),
            "mesh_optimizer": self.mesh_opt.state_dict(),
            "gaussian_head": self.gaussian_head.state_dict(),
            "sr": self.sr.state_dict() if self.sr is not None else None,
            "delta_poses": self.delta_poses.detach().clone(),
            "gaussian_optimizer": self.gauss_opt.state_dict() if self.gauss_opt is not None else None,
            "perceptual_loss": self.perceptual_status,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["generator"])
        self.sphere_done = bool(state["sphere_done"])
        self.mesh_head.load_state_dict(state["mesh_head"])
        self.mesh_opt.load_state_dict(state["mesh_optimizer"])
        self.gaussian_head.load_points_state(state["gaussian_head"])
        if self.sr is not None and state.get("sr") is not None:
            self.sr.load_state_dict(state["sr"])
        with torch.no_grad():
            self.delta_poses.copy_(state["delta_poses"])
        self.gaussians_built = bool(state["gaussians_built"])
        if self.gaussians_built:
            self._make_gaussian_optimizer()
            self.gauss_opt.load_state_dict(state["gaussian_optimizer"])

    # ------------------------------------------------------------------ export
    @torch.no_grad()
    def export(self, out_dir: Path, frame: Frame | None = None) -> list[Path]:
        """``neutral_mesh.ply`` (stage-1 canonical surface) and, after stage 2,
        ``gaussians_canonical.npz`` (X0, tanh F0, log-scales, quaternions, opacity logits)."""
        import numpy as np
        from plyfile import PlyData, PlyElement

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        mesh = self.mesh_head.extract(self.grid)
        v = mesh.verts.cpu().numpy().astype(np.float32)
        f = mesh.faces.cpu().numpy().astype(np.int32)
        ve = np.array([tuple(p) for p in v], dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
        fe = np.array([(tuple(t),) for t in f], dtype=[("vertex_indices", "i4", (3,))])
        p = out_dir / "neutral_mesh.ply"
        PlyData([PlyElement.describe(ve, "vertex"), PlyElement.describe(fe, "face")]).write(str(p))
        written.append(p)
        if self.gaussians_built:
            gh = self.gaussian_head
            p = out_dir / "gaussians_canonical.npz"
            np.savez(p, xyz=gh.xyz.cpu().numpy(), feature=torch.tanh(gh.feature).cpu().numpy(),
                     log_scales=gh.scales.cpu().numpy(), rotation=gh.rotation.cpu().numpy(),
                     opacity_logit=gh.opacity.cpu().numpy(), landmarks=gh.landmarks.cpu().numpy(),
                     canonical_center=self.cond.center.cpu().numpy(), canonical_scale=self.cond.scale)
            written.append(p)
        return written
