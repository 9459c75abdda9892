"""Animatable Gaussians (Li, Zheng, Wang, Liu; CVPR 2024) as an avatarbench method.

Pipeline (fact sheet ``animatable_gaussians.md``; deviations in ``docs/methods/animatable_gaussians.md``):

1. canonical SMPL-X of the subject in the Da-pose; an LBS weight volume diffused from its
   skinning weights (:mod:`.lbs_volume`);
2. the template: an SDF fitted to the training masks of the first training frame(s) and meshed by
   marching cubes, or the SMPL-X mesh (``template.kind``; :mod:`.template`);
3. front/back orthographic position maps of the template; one Gaussian per valid pixel with fixed
   canonical bases (position, 3-NN scale, identity rotation, opacity 0.1) and LBS weights
   (:mod:`.position_maps`);
4. per frame, the front map posed without root (body pose, jaw, expression) at half resolution
   is the input of three StyleUNets (:mod:`.avatar_net`) predicting position offsets (x 0.05),
   colours and opacity/scale/rotation residuals; a view-cosine map enters the colour decoders;
5. forward LBS of the Gaussians with the blended ``A_live A_cano^-1`` (:mod:`.posing`) and the
   shared rasterizer;
6. training: a pretrain stage pulling the predictions to the canonical bases, then L1 (boundary
   masked) + 0.1 LPIPS-VGG on the mask crop + 0.005 offset norm, Adam 5e-4 with cosine decay,
   random backgrounds; at test time on novel poses, the PCA projection of the pose map
   (20 components, clamped to +- 2 sigma; :mod:`.pose_pca`).
"""

from __future__ import annotations

import collections
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

from .avatar_net import MlpAvatarNet, StyleUNetAvatarNet
from .losses import PerceptualLoss, boundary_band, composite_background, lpips_crop, offset_regulariser
from .pose_pca import PosePCA
from .posing import SmplxPoser, apply_points, apply_rotations, blend_transforms
from .position_maps import PositionMaps, render_position_maps

__all__ = ["AnimatableGaussians", "cosine_lr", "write_gaussians_ply", "canonical_body_pose"]

SH_C0 = 0.28209479177387814


def cosine_lr(step: int, total: int, lr0: float, alpha: float = 0.05) -> float:
    """Cosine decay from ``lr0`` to ``alpha * lr0`` over ``total`` steps (official ``update_lr``)."""
    t = min(max(step, 0), max(total, 1)) / max(total, 1)
    return lr0 * (alpha + (1 - alpha) * 0.5 * (1 + math.cos(math.pi * t)))


def canonical_body_pose(name: str) -> torch.Tensor:
    """(63,) canonical body pose: ``da_pose`` (hips +-25 deg about z, official) or ``t_pose``."""
    from avatarbench.bodymodels.smplx import da_pose_body_pose

    if name == "da_pose":
        return da_pose_body_pose()[0]
    if name == "t_pose":
        return torch.zeros(63)
    raise ConfigError(f"method.canonical_pose={name!r}: expected 'da_pose' or 't_pose'")


def write_gaussians_ply(path: Path, means: torch.Tensor, colors: torch.Tensor, opacities: torch.Tensor,
                        scales: torch.Tensor, quats: torch.Tensor) -> Path:
    """A 3DGS PLY (degree-0 SH, ``f_dc = (rgb - 0.5) / C0``; opacity logit; log scales; wxyz quats).

    Args: means (N, 3); colors (N, 3) RGB; opacities (N,) in (0, 1); scales (N, 3); quats (N, 4).
    """
    from plyfile import PlyData, PlyElement

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = means.shape[0]
    op = opacities.clamp(1e-6, 1 - 1e-6)
    cols = {"x": means[:, 0], "y": means[:, 1], "z": means[:, 2], "nx": torch.zeros(n), "ny": torch.zeros(n),
            "nz": torch.zeros(n)}
    for i in range(3):
        cols[f"f_dc_{i}"] = (colors[:, i] - 0.5) / SH_C0
    cols["opacity"] = torch.log(op / (1 - op))
    for i in range(3):
        cols[f"scale_{i}"] = torch.log(scales[:, i].clamp_min(1e-12))
    for i in range(4):
        cols[f"rot_{i}"] = quats[:, i]
    el = np.empty(n, dtype=[(k, "f4") for k in cols])
    for k, v in cols.items():
        el[k] = v.detach().cpu().float().numpy()
    PlyData([PlyElement.describe(el, "vertex")]).write(str(path))
    return path


class AnimatableGaussians(AvatarMethod):
    """Animatable Gaussians. ``cfg`` is the resolved ``method`` node (see the YAML for the keys)."""

    name = "animatable_gaussians"
    kind = "body"

    # ------------------------------------------------------------------ construction
    def stages(self) -> list[Stage]:
        t = self.cfg.train
        return [Stage("pretrain", int(t.pretrain_iterations)), Stage("train", int(t.iterations))]

    def setup(self, train_frames: list[Frame]) -> None:
        from avatarbench.bodymodels.smplx import load_smplx

        cfg, dev = self.cfg, self.device
        if not train_frames:
            raise ConfigError("animatable_gaussians: no training frames")
        self.smplx = load_smplx(self.subject.body_model_path).to(dev)
        betas = self.subject.canonical.get("betas") if self.subject.canonical else None
        if betas is None:
            betas = train_frames[0].driving.get("betas", np.zeros(10, np.float32))
        self.poser = SmplxPoser(self.smplx, np.asarray(betas), canonical_body_pose(str(cfg.canonical_pose)).to(dev),
                                canonical_face=str(cfg.canonical_face))
        self.train_timesteps = sorted({f.timestep for f in train_frames})
        self._train_ts_set = set(self.train_timesteps)
        self.setup_info: dict[str, Any] = {}
        self.gen = torch.Generator().manual_seed(int(cfg.seed))
        self._build_canonical(train_frames)
        self._build_networks()
        self._fit_pca(train_frames)
        self.perceptual = PerceptualLoss("vgg", dev, enabled=float(cfg.loss.lpips) > 0)
        self.background = torch.tensor(self.subject.background, dtype=torch.float32, device=dev)
        self._cond_cache: dict[int, torch.Tensor] = {}
        self._live_cache: dict[int, torch.Tensor] = {}

    # ---- canonical template, maps and Gaussians
    def _build_canonical(self, train_frames: list[Frame], template: tuple[torch.Tensor, torch.Tensor] | None = None
                         ) -> None:
        from .lbs_volume import build_lbs_weight_volume

        cfg, dev = self.cfg, self.device
        cb = self.poser.canonical
        vcfg = cfg.lbs_volume
        self.volume = build_lbs_weight_volume(cb.verts, cb.faces, cb.weights, int(vcfg.resolution),
                                              padding=float(vcfg.padding), iterations=int(vcfg.iterations))
        kind = str(cfg.template.kind)
        if template is not None:
            tv, tf = template[0].to(dev), template[1].to(dev)
        elif kind == "smplx":
            tv, tf = cb.verts, cb.faces
        elif kind == "fit":
            tv, tf = self._fit_template(train_frames)
        else:
            raise ConfigError(f"method.template.kind={kind!r}: expected 'fit' or 'smplx'")
        self.template_verts, self.template_faces = tv.float(), tf.long()
        centre = 0.5 * (cb.verts.min(0).values + cb.verts.max(0).values)
        size = int(cfg.maps.size)
        if size & (size - 1) or size < 16:
            raise ConfigError(f"method.maps.size={size}: expected a power of 2 >= 16")
        pm = render_position_maps(self.template_verts, self.template_faces, size, centre, float(cfg.maps.extent))
        self._set_maps(pm)

    def _fit_template(self, train_frames: list[Frame]) -> tuple[torch.Tensor, torch.Tensor]:
        from .template import SilhouetteView, fit_template_sdf, sdf_to_mesh

        tc = self.cfg.template
        t0, source = self._template_timestep()
        i0 = self.train_timesteps.index(t0)
        ts = self.train_timesteps[i0: i0 + max(1, int(tc.num_frames))]
        self.setup_info["template_frame"] = {"timestep": int(t0), "source": source}
        views = []
        for f in train_frames:
            if f.timestep in ts:
                m = f.mask()
                if m is None:
                    raise ConfigError(f"animatable_gaussians: template.kind=fit needs masks ({f.key} has none); "
                                      "use template.kind=smplx")
                views.append(SilhouetteView(f.camera, m[..., 0], self.poser.live_transforms(f.driving)))
        cb = self.poser.canonical
        sdf, bounds, info = fit_template_sdf(
            cb.verts, cb.faces, self.volume, views, res=tuple(int(r) for r in tc.resolution),
            band=float(tc.band), iterations=int(tc.iterations), views_per_step=int(tc.views_per_step),
            carve_weight=float(tc.carve_weight), cover_weight=float(tc.cover_weight),
            prior_weight=float(tc.prior_weight), smooth_weight=float(tc.smooth_weight), seed=int(self.cfg.seed),
            device=self.device)
        v, f = sdf_to_mesh(sdf, bounds)
        info.update(template_verts=int(v.shape[0]), template_faces=int(f.shape[0]))
        self.setup_info["template"] = info
        return v.to(self.device), f.to(self.device)

    def _template_timestep(self) -> tuple[int, str]:
        """The timestep the template is fitted on, and where it comes from.

        ``template.frame``: ``auto`` = the official per-subject frame of ``configs/<subject>/
        template.yaml`` when the data layer knows it (``meta['split_spec']['template_frame']``) and it
        is a training timestep, else the first training timestep; ``first``; or a timestep.
        """
        want = self.cfg.template.get("frame", "auto")
        first = self.train_timesteps[0]
        if want == "first":
            return first, "first training frame"
        if want == "auto":
            spec = (self.subject.meta or {}).get("split_spec") or {}
            t = spec.get("template_frame")
            if t is None:
                return first, "first training frame (no official template frame known for this subject)"
            if int(t) not in self._train_ts_set:
                return first, (f"first training frame (the official template frame {int(t)} is not a training "
                               "frame of this split)")
            return int(t), f"official template frame ({spec.get('source', 'upstream config')})"
        try:
            t = int(want)
        except (TypeError, ValueError):
            raise ConfigError(f"method.template.frame={want!r}: expected 'auto', 'first' or a timestep") from None
        if t not in self._train_ts_set:
            raise ConfigError(f"method.template.frame={t}: not a training timestep "
                              f"({self.train_timesteps[0]}..{self.train_timesteps[-1]})")
        return t, "method.template.frame"

    def _set_maps(self, pm: PositionMaps) -> None:
        """Canonical Gaussians from the position maps."""
        from avatarbench.geometry.knn import mean_knn_distance

        dev = self.device
        self.maps = pm
        S = pm.size
        self.idx_front, self.idx_back = (i.to(dev) for i in pm.valid_indices())
        pos = pm.position.reshape(2, S * S, 3)
        nrm = pm.normal.reshape(2, S * S, 3)
        self.cano_pos = torch.cat([pos[0, self.idx_front], pos[1, self.idx_back]]).float().to(dev)
        self.cano_nrm = torch.cat([nrm[0, self.idx_front], nrm[1, self.idx_back]]).float().to(dev)
        n = self.cano_pos.shape[0]
        if n < 4:
            raise ConfigError(f"animatable_gaussians: the position maps have only {n} valid pixels "
                              f"(maps.size={S}, extent={pm.extent}); the template is not in the map window")
        if str(self.cfg.template.kind) == "smplx":
            # official interpolate_lbs: barycentric SMPL-X weights of the pixel's face
            cb = self.poser.canonical
            fid = pm.face_id.reshape(2, S * S)
            bary = pm.bary.reshape(2, S * S, 3).float()
            f = torch.cat([fid[0, self.idx_front], fid[1, self.idx_back]]).to(dev)
            b = torch.cat([bary[0, self.idx_front], bary[1, self.idx_back]]).to(dev)
            self.lbs_weights = (b.unsqueeze(-1) * cb.weights[self.template_faces[f]]).sum(1)
        else:
            self.lbs_weights = self.volume.query(self.cano_pos)
        # official create_from_pcd: log sqrt(mean squared distance to the 3 nearest neighbours)
        d2 = mean_knn_distance(self.cano_pos, k=3, squared=True).clamp_min(1e-10)
        self.base_log_scale = torch.log(torch.sqrt(d2))[:, None].expand(n, 3).contiguous()
        op = float(self.cfg.model.init_opacity)
        self.base_opacity_logit = torch.full((n,), math.log(op / (1 - op)), device=dev)
        self.base_quat = torch.tensor([1.0, 0.0, 0.0, 0.0], device=dev).expand(n, 4).contiguous()
        # the pose condition: valid pixels of the half-resolution front map
        half_mask = pm.mask[0, ::2, ::2].reshape(-1).to(dev)
        self.cond_idx = torch.nonzero(half_mask).squeeze(1)
        self.cond_cano = pm.position[0, ::2, ::2].reshape(-1, 3).to(dev)[self.cond_idx].float()
        self.cond_weights = self.volume.query(self.cond_cano) if str(self.cfg.template.kind) != "smplx" else \
            self._smplx_pixel_weights(pm, self.cond_idx)
        # each Gaussian's pixel in the half-resolution maps (MLP ablation)
        flat = torch.cat([self.idx_front, self.idx_back])
        r, c = flat // S, flat % S
        self.pixel_half = (r // 2) * (S // 2) + (c // 2)

    def _smplx_pixel_weights(self, pm: PositionMaps, half_idx: torch.Tensor) -> torch.Tensor:
        S = pm.size
        fid = pm.face_id[0, ::2, ::2].reshape(-1).to(self.device)[half_idx]
        b = pm.bary[0, ::2, ::2].reshape(-1, 3).to(self.device)[half_idx].float()
        return (b.unsqueeze(-1) * self.poser.canonical.weights[self.template_faces[fid]]).sum(1)

    def _build_networks(self) -> None:
        cfg, dev = self.cfg, self.device
        kind = str(cfg.network.kind)
        if kind == "styleunet":
            sc = cfg.network.styleunet
            kw = dict(style_dim=int(sc.style_dim), n_mlp=int(sc.n_mlp), min_size=int(sc.min_size),
                      channel_base=int(sc.channel_base), channel_multiplier=int(sc.channel_multiplier),
                      max_channels=int(sc.max_channels))
            torch.manual_seed(int(cfg.seed))
            self.net = StyleUNetAvatarNet(int(cfg.maps.size), kw, use_viewdir=bool(cfg.network.viewdir),
                                          viewdir_hidden=sc.get("viewdir_hidden")).to(dev)
        elif kind == "mlp":
            mc = cfg.network.mlp
            torch.manual_seed(int(cfg.seed))
            self.net = MlpAvatarNet(int(mc.hidden), int(mc.layers), int(mc.n_freq),
                                    use_viewdir=bool(cfg.network.viewdir)).to(dev)
        else:
            raise ConfigError(f"method.network.kind={kind!r}: expected 'styleunet' or 'mlp'")
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=float(cfg.train.lr), foreach=True)
        self.setup_info["parameters"] = int(sum(p.numel() for p in self.net.parameters()))
        self.setup_info["num_gaussians"] = int(self.cano_pos.shape[0])

    def _fit_pca(self, train_frames: list[Frame]) -> None:
        pc = self.cfg.pca
        self.pca = None
        if not bool(pc.enabled):
            return
        drivings = {}
        for f in train_frames:
            drivings.setdefault(f.timestep, f.driving)
        X = torch.stack([self._condition_points(d).reshape(-1) for d in drivings.values()])
        self.pca = PosePCA.fit(X, int(pc.n_components), float(pc.sigma))

    # ------------------------------------------------------------------ per-frame inputs
    def _condition_points(self, driving) -> torch.Tensor:
        """(N_c, 3) canonical half-resolution front pixels posed without the root."""
        T = self.poser.condition_transforms(driving)
        return apply_points(blend_transforms(self.cond_weights, T), self.cond_cano)

    def _uses_pca(self, frame: Frame) -> bool:
        return self.pca is not None and (frame.driver is not None or frame.timestep not in self._train_ts_set)

    def _pose_map(self, frame: Frame, use_pca: bool) -> torch.Tensor:
        """(1, 3, S/2, S/2) posed front position map (optionally PCA-projected)."""
        key = frame.timestep if frame.driver is None else None
        pts = self._cond_cache.get(key) if (key is not None and not use_pca) else None
        if pts is None:
            pts = self._condition_points(frame.driving)
            if use_pca:
                pts = self.pca.project(pts.reshape(-1)).reshape(-1, 3)
            elif key is not None and key in self._train_ts_set:
                self._cond_cache[key] = pts
        s = int(self.cfg.maps.size) // 2
        m = torch.zeros(s * s, 3, device=self.device)
        m[self.cond_idx] = pts
        return m.T.reshape(1, 3, s, s)

    def _live(self, frame: Frame) -> torch.Tensor:
        """(55, 4, 4) live transforms (cached for training timesteps)."""
        key = frame.timestep if (frame.driver is None and frame.timestep in self._train_ts_set) else None
        T = self._live_cache.get(key) if key is not None else None
        if T is None:
            T = self.poser.live_transforms(frame.driving)
            if key is not None:
                self._live_cache[key] = T
        return T

    def _view_cosines(self, M: torch.Tensor, frame: Frame, noise: bool) -> torch.Tensor:
        """(N,) cosine between the posed template normal and the direction to the camera.

        As the official ``get_viewdir_feat``: the canonical normal times the blended 3x3 (not
        re-normalised), dotted with the unit direction from the posed base point to the camera.
        M: (N, 4, 4) blended transforms."""
        x = apply_points(M, self.cano_pos)
        n = (M[:, :3, :3] @ self.cano_nrm.unsqueeze(-1)).squeeze(-1)
        d = frame.camera.center.to(self.device, torch.float32)[None] - x
        d = F.normalize(d, dim=-1)
        if noise:
            d = F.normalize(d + float(self.cfg.network.viewdir_noise) * torch.randn(d.shape, generator=self.gen
                                                                                   ).to(self.device), dim=-1)
        return (n * d).sum(-1)

    def _view_maps(self, cos: torch.Tensor) -> torch.Tensor:
        """(2, 1, S/2, S/2) front/back view-cosine maps (scattered, nearest-downsampled)."""
        S = int(self.cfg.maps.size)
        m = torch.zeros(2, S * S, device=self.device)
        nf = self.idx_front.numel()
        m[0, self.idx_front] = cos[:nf]
        m[1, self.idx_back] = cos[nf:]
        return m.reshape(2, 1, S, S)[..., ::2, ::2]

    # ------------------------------------------------------------------ forward
    def _predict(self, frame: Frame, training: bool) -> dict[str, torch.Tensor]:
        """Network outputs and posed Gaussians for a frame."""
        T = self._live(frame)
        M = blend_transforms(self.lbs_weights, T)
        use_pca = (not training) and self._uses_pca(frame)
        pose_map = self._pose_map(frame, use_pca)
        viewdir = bool(self.cfg.network.viewdir)
        cos = self._view_cosines(M, frame, noise=training) if viewdir else None
        view_maps = self._view_maps(cos) if viewdir else None
        raw = self.net(pose_map, view_maps, self.idx_front, self.idx_back, canonical=self.cano_pos,
                       pixel_half=self.pixel_half, view_cos=cos)
        offset = float(self.cfg.model.offset_scale) * raw[:, 0:3]
        colors = raw[:, 3:6]
        opacity = torch.sigmoid(self.base_opacity_logit + raw[:, 6])
        log_scale = self.base_log_scale + raw[:, 7:10]
        quat = self.base_quat + raw[:, 10:14]
        cano = self.cano_pos + offset
        means = apply_points(M, cano)
        quats = apply_rotations(M, quat)
        return {"offset": offset, "colors": colors, "opacity": opacity, "log_scale": log_scale, "quat_cano": quat,
                "cano": cano, "means": means, "quats": quats, "scales": torch.exp(log_scale), "pca": use_pca}

    def _rasterize(self, g: dict, frame: Frame, bg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from avatarbench.render import rasterize

        viewmats, Ks = stack_cameras([frame.camera], device=self.device)
        colors, alphas, _ = rasterize(g["means"], g["quats"], g["scales"], g["opacity"], g["colors"], viewmats, Ks,
                                      frame.camera.width, frame.camera.height, backgrounds=bg[None],
                                      backend=str(self.cfg.render_backend))
        return colors[0], alphas[0]

    # ------------------------------------------------------------------ training
    def _set_lr(self, step: int) -> float:
        t = self.cfg.train
        n_pre = int(t.pretrain_iterations)
        lr = float(t.lr) if step < n_pre else cosine_lr(step - n_pre, int(t.iterations), float(t.lr),
                                                         float(t.lr_final_ratio))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _pretrain_loss(self, g: dict[str, torch.Tensor]) -> torch.Tensor:
        """Official ``forward_one_pass_pretrain``: L1 of the activated attributes to the activated
        canonical bases: positions, sigmoid opacities, exp scales, normalised quaternions."""
        return (F.l1_loss(g["cano"], self.cano_pos)
                + F.l1_loss(g["opacity"], torch.sigmoid(self.base_opacity_logit))
                + F.l1_loss(g["scales"], torch.exp(self.base_log_scale))
                + F.l1_loss(F.normalize(g["quat_cano"], dim=-1), F.normalize(self.base_quat, dim=-1)))

    def train_step(self, sample: Sample, step: int) -> dict[str, float]:
        self.net.train()
        lr = self._set_lr(step)
        n_pre = int(self.cfg.train.pretrain_iterations)
        if step < n_pre:
            g = self._predict(sample.frame, training=True)
            loss = self._pretrain_loss(g)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            return {"loss": float(loss.detach()), "lr": lr, "perceptual_loss": self.perceptual.status}
        if step == n_pre and n_pre > 0 and bool(self.cfg.train.reset_adam_after_pretrain):
            # official AvatarTrainer.train: the pretrained weights are loaded without the optimiser
            # state and ``optm.state`` is cleared, so Adam's moments and step count start afresh
            self.optimizer.state = collections.defaultdict(dict)
        w = self.cfg.loss
        gt, mask = sample.image, sample.mask
        if bool(self.cfg.train.random_background) and mask is not None:
            bg = torch.rand(3, generator=self.gen).to(self.device)
            gt = composite_background(gt, mask, self.background, bg)
        else:
            bg = self.background
        g = self._predict(sample.frame, training=True)
        rgb, _ = self._rasterize(g, sample.frame, bg)
        pred = rgb
        bb = self.cfg.train.boundary_band
        if bool(bb.enabled) and mask is not None:
            band = boundary_band(mask, int(bb.kernel))
            pred = torch.where(band, bg.expand_as(pred), pred)
            gt = torch.where(band, bg.expand_as(gt), gt)
        l1 = (pred - gt).abs().mean()
        l_off = offset_regulariser(g["offset"])
        loss = float(w.l1) * l1 + float(w.offset) * l_off
        logs: dict[str, Any] = {"l1": float(l1.detach()), "offset": float(l_off.detach())}
        if self.perceptual.enabled and float(w.lpips) > 0 and mask is not None:
            lc = self.cfg.loss.lpips_crop
            u = tuple(torch.rand(2, generator=self.gen).tolist())
            crops = lpips_crop(pred, gt, mask, bg, int(lc.size),
                               random_patch=step - int(self.cfg.train.pretrain_iterations) >= int(lc.random_patch_after),
                               u=u)
            if crops is not None:
                l_p = self.perceptual(*crops)
                loss = loss + float(w.lpips) * l_p
                logs["lpips"] = float(l_p.detach())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            psnr = -10 * torch.log10(((rgb.clamp(0, 1) - gt) ** 2).mean().clamp_min(1e-12))
        logs.update(loss=float(loss.detach()), psnr=float(psnr), lr=lr, perceptual_loss=self.perceptual.status)
        return logs

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def render(self, frame: Frame) -> RenderOutput:
        self.net.eval()
        g = self._predict(frame, training=False)
        rgb, alpha = self._rasterize(g, frame, self.background)
        return RenderOutput(rgb=rgb.clamp(0, 1), alpha=alpha, extras={"pca": bool(g["pca"])})

    @torch.no_grad()
    def gaussians_at(self, frame: Frame) -> FrameGaussians:
        self.net.eval()
        g = self._predict(frame, training=False)
        return FrameGaussians(g["means"], g["quats"], g["scales"], g["opacity"], g["colors"])

    @property
    def perceptual_loss_status(self) -> str:
        """``"enabled (found <backbone>)"`` or ``"disabled (<reason>)"``: the official 0.1 LPIPS-VGG
        term as this process built it (recorded in results.json and the training log)."""
        return self.perceptual.status

    def num_gaussians(self) -> int:
        return int(self.cano_pos.shape[0]) if hasattr(self, "cano_pos") else 0

    @torch.no_grad()
    def geometry(self, frame: Frame) -> torch.Tensor:
        self.net.eval()
        return self._predict(frame, training=False)["means"]

    @torch.no_grad()
    def export(self, out_dir: Path, frame: Frame | None = None) -> list[Path]:
        """``gaussians_<timestep>.ply``: the posed Gaussians of ``frame`` (default: the first training
        timestep), and ``template.ply`` (the canonical template mesh)."""
        from plyfile import PlyData, PlyElement

        self.net.eval()
        out_dir = Path(out_dir)
        if frame is None:
            frame = next(f for f in self.subject.frames("train") if f.timestep == self.train_timesteps[0])
        g = self._predict(frame, training=False)
        paths = [write_gaussians_ply(out_dir / f"gaussians_{frame.timestep:05d}.ply", g["means"], g["colors"],
                                     g["opacity"], g["scales"], g["quats"])]
        v = self.template_verts.detach().cpu().numpy().astype(np.float32)
        f = self.template_faces.detach().cpu().numpy().astype(np.int32)
        ve = np.empty(len(v), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
        ve["x"], ve["y"], ve["z"] = v[:, 0], v[:, 1], v[:, 2]
        fe = np.empty(len(f), dtype=[("vertex_indices", "i4", (3,))])
        fe["vertex_indices"] = f
        p = out_dir / "template.ply"
        PlyData([PlyElement.describe(ve, "vertex"), PlyElement.describe(fe, "face")]).write(str(p))
        paths.append(p)
        return paths

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "net": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "template": {"verts": self.template_verts.cpu(), "faces": self.template_faces.cpu(),
                         "kind": str(self.cfg.template.kind)},
            "gaussians": {"cano_pos": self.cano_pos.cpu(), "lbs_weights": self.lbs_weights.cpu(),
                          "num": int(self.cano_pos.shape[0])},
            "pca": self.pca.state_dict() if self.pca is not None else None,
            "generator": self.gen.get_state(),
            "setup_info": dict(self.setup_info),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        tv, tf = state["template"]["verts"], state["template"]["faces"]
        same = (tv.shape == self.template_verts.shape and tf.shape == self.template_faces.shape
                and torch.equal(tv, self.template_verts.cpu()) and torch.equal(tf, self.template_faces.cpu()))
        if not same:  # rebuild the maps from the saved template
            self.template_verts, self.template_faces = tv.to(self.device), tf.to(self.device)
            cb = self.poser.canonical
            centre = 0.5 * (cb.verts.min(0).values + cb.verts.max(0).values)
            pm = render_position_maps(self.template_verts, self.template_faces, int(self.cfg.maps.size), centre,
                                      float(self.cfg.maps.extent))
            self._set_maps(pm)
        g = state["gaussians"]
        self.cano_pos = g["cano_pos"].to(self.device)
        self.lbs_weights = g["lbs_weights"].to(self.device)
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.pca = PosePCA.from_state_dict(state["pca"]) if state.get("pca") is not None else None
        if self.pca is not None:
            self.pca.mean, self.pca.components, self.pca.variances = (t.to(self.device) for t in (
                self.pca.mean, self.pca.components, self.pca.variances))
        self.gen.set_state(state["generator"])
        self.setup_info.update(state.get("setup_info", {}))
        self._cond_cache.clear()
        self._live_cache.clear()
