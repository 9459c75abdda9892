"""GaussianAvatars (Qian et al., CVPR 2024) as an avatarbench method.

3D Gaussians rigged to the triangles of FLAME (with teeth). Each Gaussian lives in the local frame
of its parent triangle (``binding``); the shared utility :mod:`avatarbench.render.binding` maps
it to world space (mu' = k R mu + T, r' = q(R) r, s' = k exp(s)). Adaptive density control with
binding inheritance runs through :class:`~avatarbench.methods.gaussian_avatars.strategy.BindingStrategy`
(gsplat's Strategy API). FLAME pose, translation and expression of every training timestep are
fine-tuned with the Gaussians. All values default to the official code (see
``configs/methods/gaussian_avatars.yaml`` and ``docs/methods/gaussian_avatars.md``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avatarbench.data.camera import Camera, stack_cameras
from avatarbench.data.subject import Frame
from avatarbench.engine.method import AvatarMethod, FrameGaussians, RenderOutput, Sample, Stage
from avatarbench.methods.gaussian_avatars.losses import photometric_loss, position_loss, scaling_loss
from avatarbench.methods.gaussian_avatars.model import (FLAME_POSE_KEYS, MOTION_KEYS, FlameTrack, flame_forward,
                                                        init_gaussian_params, to_global)
from avatarbench.methods.gaussian_avatars.schedule import Schedule, expon_lr
from avatarbench.methods.gaussian_avatars.strategy import BindingStrategy, camera_extent


#: per-step activity flags, accumulated on the device (no host sync per step)
STEP_ACTIVITY_KEYS = ("position_loss", "position_threshold", "scaling_loss", "scaling_threshold", "teeth_visible")
#: what :meth:`GaussianAvatars.activity` counts
ACTIVITY_KEYS = STEP_ACTIVITY_KEYS + ("density_control", "cloned", "split", "pruned", "guarded", "prune_opacity",
                                      "prune_world_size", "prune_screen_size", "opacity_reset", "flame_finetune")


def visible_mask(radii: torch.Tensor) -> torch.Tensor:
    """(N,) visibility of camera 0 from the renderer's radii ((C, N, 2) or (C, N))."""
    r = radii[0]
    return (r > 0).all(dim=-1) if r.dim() == 2 else r > 0


class GaussianAvatars(AvatarMethod):
    """GaussianAvatars. ``cfg`` is the resolved ``method`` node (see the YAML for the keys)."""

    name = "gaussian_avatars"
    kind = "head"

    def __init__(self, cfg, subject, device):
        super().__init__(cfg, subject, device)
        self.sched = Schedule.from_cfg(cfg)
        self.max_sh_degree = int(cfg.model.sh_degree)
        self.active_sh_degree = 0
        self.backend = str(cfg.get("render_backend", "auto"))

    # ------------------------------------------------------------------ construction
    def stages(self) -> list[Stage]:
        return [Stage("gaussians", self.sched.iterations)]

    def make_strategy(self, white_background: bool) -> BindingStrategy:
        d, s = self.cfg.density, self.sched
        return BindingStrategy(
            grow_grad2d=float(d.grad_threshold), percent_dense=float(d.percent_dense),
            prune_opa=float(d.min_opacity), prune_scale3d=float(d.max_world_size),
            prune_scale2d_px=float(d.max_screen_size), refine_start_iter=s.densify_from,
            refine_stop_iter=s.densify_until, refine_every=max(1, s.densify_interval),
            reset_every=s.reset_interval, reset_opacity_to=float(d.reset_opacity_to),
            extra_reset_at_start=bool(d.extra_reset_white_background) and white_background,
            prune_guard=bool(d.prune_guard), split_offset=str(d.split_offset),
            screen_size_prune=str(d.screen_size_prune), verbose=bool(d.get("verbose", False)))

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        o = self.cfg.optim
        eps = float(o.adam_eps)
        lrs = {"means": float(o.position_lr_init) * self.extent, "scales": float(o.scaling_lr),
               "quats": float(o.rotation_lr), "opacities": float(o.opacity_lr), "sh0": float(o.feature_lr),
               "shN": float(o.feature_lr) * float(o.feature_rest_factor)}
        return {k: torch.optim.Adam([{"params": [self.params[k]], "lr": lrs[k], "name": k}], lr=0.0, eps=eps)
                for k in self.params}

    def _make_flame_optimizer(self) -> torch.optim.Optimizer | None:
        if not bool(self.cfg.train.finetune_flame):
            return None
        o, p = self.cfg.optim, self.track.params
        groups = [{"params": [p[k] for k in FLAME_POSE_KEYS], "lr": float(o.flame_pose_lr), "name": "pose"},
                  {"params": [p["translation"]], "lr": float(o.flame_trans_lr), "name": "trans"},
                  {"params": [p["expr"]], "lr": float(o.flame_expr_lr), "name": "expr"}]
        return torch.optim.Adam(groups, lr=0.0, eps=float(o.adam_eps))

    def setup(self, train_frames: list[Frame]) -> None:
        from avatarbench.bodymodels.flame import load_flame

        m = self.cfg.model
        path = m.get("flame_model") or self.subject.body_model_path
        self.flame = load_flame(path, teeth=bool(m.teeth), n_shape=int(m.n_shape), n_expr=int(m.n_expr)).to(self.device)
        self.flame.requires_grad_(False)
        self.faces = self.flame.faces.to(self.device)
        num_faces = int(self.faces.shape[0])

        by_t: dict[int, dict[str, np.ndarray]] = {}
        cams: dict[int, Camera] = {}
        for f in train_frames:
            by_t.setdefault(int(f.timestep), f.driving)
            cams.setdefault(f.camera.id, f.camera)
        self.track = FlameTrack(by_t, int(m.n_shape), int(m.n_expr), int(self.flame.num_verts)).to(self.device)
        finetune = bool(self.cfg.train.finetune_flame)
        for p in self.track.params.values():
            p.requires_grad_(finetune)
        centers = torch.stack([c.center for c in cams.values()])
        self.extent = camera_extent(centers, float(self.cfg.density.camera_extent_factor))
        if len(cams) < 2:  # monocular (NeRSemble benchmark): 3DGS's extent would be 0, see docs
            head = torch.as_tensor(np.mean([np.asarray(d["translation"], np.float64) for d in by_t.values()], axis=0))
            self.extent = float((centers[0].to(torch.float64) - head).norm()) * float(self.cfg.density.camera_extent_factor)

        # the method's own RNG (init colours, split samples), seeded from the engine-seeded global RNG
        seed = int(torch.randint(0, 2 ** 62, (1,)).item())
        init_gen = torch.Generator().manual_seed(seed)
        self.generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        init = init_gaussian_params(num_faces, self.max_sh_degree, float(m.init_opacity), device=self.device,
                                    generator=init_gen)
        self.params: dict[str, nn.Parameter] = {k: nn.Parameter(v) for k, v in init.items()}
        self.optimizers = self._make_optimizers()
        self.flame_optimizer = self._make_flame_optimizer()
        white = all(abs(b - 1.0) < 1e-6 for b in self.subject.background)
        self.strategy = self.make_strategy(white)
        self.strategy.check_sanity(self.params, self.optimizers)
        self.state = self.strategy.initialize_state(
            self.extent, binding=torch.arange(num_faces, device=self.device), num_faces=num_faces,
            generator=self.generator)
        self.active_sh_degree = 0
        self._set_activity({})

    # ------------------------------------------------------------------ forward
    @property
    def binding(self) -> torch.Tensor:
        """(N,) parent face of every Gaussian."""
        return self.state["binding"]

    def _driving_for(self, frame: Frame, *, training: bool = False) -> dict[str, torch.Tensor]:
        """Fine-tuned parameters for trained timesteps of undriven frames; otherwise the frame's
        motion (``expr``, ``rotation``, ``neck_pose``, ``jaw_pose``, ``eyes_pose``, ``translation``)
        on the TRAINED identity (``shape``, ``static_offset`` of the training parameters), as the
        official model does for every timestep, test and cross-identity ones included."""
        if frame.driver is None and self.track.has(frame.timestep):
            return self.track.driving(frame.timestep)
        if training:
            raise ValueError(f"training frame {frame.key} has a timestep outside the training set")
        drv = {k: v for k, v in frame.driving_tensors(self.device).items() if k in MOTION_KEYS}
        drv.update(self.track.identity())
        return drv

    def _gaussians(self, frame: Frame, training: bool = False):
        verts = flame_forward(self.flame, self._driving_for(frame, training=training))
        return to_global(self.params, self.binding, verts, self.faces)

    def _rasterize(self, means, quats, scales, camera: Camera, background):
        from avatarbench.render import rasterize

        viewmats, Ks = stack_cameras([camera], device=self.device)
        colors = torch.cat([self.params["sh0"], self.params["shN"]], dim=1)
        bg = torch.as_tensor(background, dtype=torch.float32, device=self.device)[None]
        return rasterize(means, quats, scales, torch.sigmoid(self.params["opacities"]), colors, viewmats, Ks,
                         camera.width, camera.height, sh_degree=self.active_sh_degree, backgrounds=bg,
                         backend=self.backend)

    # ------------------------------------------------------------------ training
    def train_step(self, sample: Sample, step: int) -> dict[str, float]:
        it = step + 1  # the official 1-based iteration
        lr = expon_lr(it, float(self.cfg.optim.position_lr_init) * self.extent,
                      float(self.cfg.optim.position_lr_final) * self.extent, self.sched.position_lr_max_steps)
        self.optimizers["means"].param_groups[0]["lr"] = lr
        self.active_sh_degree = self.sched.active_sh_degree(it, self.max_sh_degree)

        frame = sample.frame
        means, quats, scales, k = self._gaussians(frame, training=True)
        rgb, _, meta = self._rasterize(means, quats, scales, frame.camera, frame.background)
        info = dict(meta)
        info["face_scaling"] = k.detach()
        self.strategy.step_pre_backward(self.params, self.optimizers, self.state, step, info)

        lo = self.cfg.loss
        l1, dssim = photometric_loss(rgb[0], sample.image, float(lo.lambda_dssim))
        vis = visible_mask(meta["radii"])
        self._count_regulariser_activity(vis)
        loss_pos = position_loss(self.params["means"], vis, float(lo.threshold_position), float(lo.lambda_position))
        loss = l1 + dssim + loss_pos
        loss_scale = None
        if float(lo.lambda_scaling) != 0:
            loss_scale = scaling_loss(self.params["scales"], vis, float(lo.threshold_scaling), float(lo.lambda_scaling))
            loss = loss + loss_scale
        loss.backward()

        report = self.strategy.step_post_backward(self.params, self.optimizers, self.state, step, info, packed=False)
        self._count_density_activity(report)
        if it < self.sched.iterations:  # the official loop skips the optimiser at the last iteration
            for opt in self.optimizers.values():
                opt.step()
            if self.flame_optimizer is not None:
                self.flame_optimizer.step()
                self.activity_counts["flame_finetune"] += 1
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        if self.flame_optimizer is not None:
            self.flame_optimizer.zero_grad(set_to_none=True)

        logs = {"loss": float(loss.detach()), "l1": float(l1.detach()), "dssim": float(dssim.detach()),
                "position": float(loss_pos.detach()), "lr_position": lr, "sh_degree": self.active_sh_degree}
        if loss_scale is not None:
            logs["scaling"] = float(loss_scale.detach())
        logs.update({k: v for k, v in report.items() if v})
        return logs

    # ------------------------------------------------------------------ activity records
    @torch.no_grad()
    def _count_regulariser_activity(self, vis: torch.Tensor) -> None:
        """Count the steps on which each regulariser (and its threshold) acts on a visible
        Gaussian, whatever its weight (so a variant with weight 0 records what it removed)."""
        lo = self.cfg.loss
        norms = self.params["means"].detach()[vis].norm(dim=1)
        tp = float(lo.threshold_position)
        sc = torch.exp(self.params["scales"].detach()[vis])
        ts = float(lo.threshold_scaling)
        teeth = getattr(self.flame, "teeth_faces_mask", None)
        teeth_vis = (teeth.to(vis.device)[self.binding[vis]].any() if teeth is not None
                     else torch.zeros((), dtype=torch.bool, device=vis.device))
        flags = torch.stack([(norms > tp).any(), ((norms > 0) & (norms <= tp)).any(), (sc > ts).any(),
                             (sc <= ts).any(), teeth_vis])  # order of STEP_ACTIVITY_KEYS
        self._step_activity += flags.to(self._step_activity.dtype)

    def _count_density_activity(self, report: dict[str, int]) -> None:
        a = self.activity_counts
        for key in ("cloned", "split", "pruned", "guarded", "prune_opacity", "prune_world_size", "prune_screen_size"):
            a[key] += int(report.get(key, 0))
        a["density_control"] += int(report.get("cloned", 0) + report.get("split", 0) + report.get("pruned", 0) > 0)
        a["opacity_reset"] += int(report.get("reset", 0))

    def activity(self) -> dict[str, int]:
        """How often each regulariser and density-control rule acted during training (results.json
        ``train.activity``): steps with the position / scaling hinge active on a visible Gaussian
        (``position_loss``, ``scaling_loss``) and with its threshold clipping one
        (``position_threshold``, ``scaling_threshold``); densification events that changed the
        set (``density_control``); Gaussians cloned, split, pruned, kept by the prune guard
        (``guarded``) and flagged by each prune rule before the guard; opacity resets; FLAME
        fine-tuning steps; steps with a teeth Gaussian visible."""
        counts = dict(self.activity_counts)
        counts.update(zip(STEP_ACTIVITY_KEYS, (int(v) for v in self._step_activity.tolist())))
        return {k: counts[k] for k in ACTIVITY_KEYS}

    def _set_activity(self, saved: dict[str, int]) -> None:
        self.activity_counts = {k: int(saved.get(k, 0)) for k in ACTIVITY_KEYS if k not in STEP_ACTIVITY_KEYS}
        self._step_activity = torch.tensor([int(saved.get(k, 0)) for k in STEP_ACTIVITY_KEYS], dtype=torch.long,
                                           device=self.device)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def render(self, frame: Frame) -> RenderOutput:
        means, quats, scales, _ = self._gaussians(frame)
        rgb, alpha, _ = self._rasterize(means, quats, scales, frame.camera, frame.background)
        return RenderOutput(rgb=rgb[0].clamp(0, 1), alpha=alpha[0], extras={})

    @torch.no_grad()
    def gaussians_at(self, frame: Frame) -> FrameGaussians:
        means, quats, scales, _ = self._gaussians(frame)
        colors = torch.cat([self.params["sh0"], self.params["shN"]], dim=1)
        return FrameGaussians(means, quats, scales, torch.sigmoid(self.params["opacities"]), colors,
                              sh_degree=self.active_sh_degree)

    def num_gaussians(self) -> int:
        return int(self.params["means"].shape[0]) if hasattr(self, "params") else 0

    @torch.no_grad()
    def geometry(self, frame: Frame) -> torch.Tensor:
        """(N, 3) global Gaussian means at ``frame``."""
        return self._gaussians(frame)[0]

    def face_counts(self) -> torch.Tensor:
        """(F,) Gaussians per face."""
        return self.strategy.face_counts(self.state)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """A detached CPU copy (nothing aliases the live tensors)."""

        def cpu(v):
            return v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else copy.deepcopy(v)

        def opt_state(o):
            sd = o.state_dict()
            return {"state": {i: {k: cpu(v) for k, v in s.items()} for i, s in sd["state"].items()},
                    "param_groups": copy.deepcopy(sd["param_groups"])}

        return {
            "params": {k: cpu(v) for k, v in self.params.items()},
            "optimizers": {k: opt_state(o) for k, o in self.optimizers.items()},
            "flame_optimizer": opt_state(self.flame_optimizer) if self.flame_optimizer is not None else None,
            "strategy_state": {k: cpu(v) for k, v in self.state.items() if k != "generator"},
            "track": {k: cpu(v) for k, v in self.track.state_dict().items()},
            "generator": self.generator.get_state(),
            "active_sh_degree": self.active_sh_degree,
            "extent": self.extent,
            "activity": self.activity(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved_ts = state["track"]["timesteps"]
        if not torch.equal(saved_ts.cpu(), self.track.timesteps.cpu()):
            raise ValueError("checkpoint was trained on other timesteps than this run's training split")
        self.track.load_state_dict({k: v.to(self.device) for k, v in state["track"].items()})
        self.params = {k: nn.Parameter(v.to(self.device)) for k, v in state["params"].items()}
        self.optimizers = self._make_optimizers()
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        if self.flame_optimizer is not None and state.get("flame_optimizer") is not None:
            self.flame_optimizer.load_state_dict(state["flame_optimizer"])
        for k, v in state["strategy_state"].items():
            self.state[k] = v.to(self.device) if isinstance(v, torch.Tensor) else v
        self.state["generator"] = self.generator
        self.generator.set_state(state["generator"])
        self.active_sh_degree = int(state["active_sh_degree"])
        self.extent = float(state["extent"])
        self._set_activity(state.get("activity", {}))
        self.strategy.check_sanity(self.params, self.optimizers)

    # ------------------------------------------------------------------ export
    @torch.no_grad()
    def export(self, out_dir: Path, frame: Frame | None = None) -> list[Path]:
        """``point_cloud_global.ply`` (world-space Gaussians at ``frame``, or at the first training
        timestep, with ``binding_0``), ``point_cloud.ply`` (the canonical local parameters with
        ``binding_0``, the official file layout), ``flame_param.npz`` (FLAME parameters of every
        timestep in the official layout: fine-tuned rows for training timesteps, tracked rows for the
        subject's other timesteps; see :meth:`FlameTrack.export_arrays`) and ``flame_param_rows.json``
        (which rows are fine-tuned and which tracked)."""
        from avatarbench.methods.gaussian_avatars.export import write_gaussian_ply

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if frame is None:
            t0 = int(self.track.timesteps[0])
            verts = flame_forward(self.flame, self.track.driving(t0))
            means, quats, scales, _ = to_global(self.params, self.binding, verts, self.faces)
        else:
            means, quats, scales, _ = self._gaussians(frame)
        p = self.params
        paths = [
            write_gaussian_ply(out_dir / "point_cloud_global.ply", means, p["sh0"], p["shN"], p["opacities"],
                               torch.log(scales), quats, self.binding),
            write_gaussian_ply(out_dir / "point_cloud.ply", p["means"], p["sh0"], p["shN"], p["opacities"],
                               p["scales"], p["quats"], self.binding),
        ]
        tracked = {}
        for split in ("train", "novel_view", "self_reenact"):  # the subject's own timesteps (official: train + test)
            if split in self.subject.split_names:
                for t in self.subject.timesteps(split):
                    if not self.track.has(t):
                        tracked.setdefault(t, self.subject.driving(t))
        npz = out_dir / "flame_param.npz"
        np.savez_compressed(npz, **self.track.export_arrays(tracked))
        rows = out_dir / "flame_param_rows.json"
        rows.write_text(json.dumps({"finetuned": [int(t) for t in self.track.timesteps.tolist()],
                                    "tracked": sorted(tracked)}, indent=1) + "\n")
        paths += [npz, rows]
        return paths
