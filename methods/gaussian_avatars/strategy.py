"""Adaptive density control with binding inheritance (GaussianAvatars), behind gsplat's Strategy API.

The strategy follows the official GaussianAvatars / 3DGS ``densify_and_prune`` logic, written as a
gsplat-style strategy (a dataclass with ``check_sanity``, ``initialize_state``,
``step_pre_backward`` and ``step_post_backward``) so it works with both render backends
(gsplat and our torch rasteriser); gsplat itself is never imported here.

Parameters (``params``: dict name -> ``nn.Parameter``, all per-Gaussian, first dim N), in the
LOCAL frame of each Gaussian's parent triangle:

- ``means`` (N, 3) local position mu, in units of the triangle scale k
- ``scales`` (N, 3) log local scale s (global scale = k * exp(s))
- ``quats`` (N, 4) local rotation, wxyz, unnormalised
- ``opacities`` (N,) opacity logits
- ``sh0`` (N, 1, 3), ``shN`` (N, K-1, 3) SH coefficients

``optimizers``: dict with the same keys, each an optimiser with exactly one param group holding
exactly that parameter.

State (``initialize_state``): per-Gaussian tensors resized in lock-step with the parameters on
every operation -- ``binding`` (N,) long parent face, ``grad2d`` (N,) accumulated view-space
gradient norm, ``count`` (N,) visibility count, ``radii`` (N,) max screen radius in pixels -- plus
``scene_scale`` (the cameras' extent), ``num_faces`` and an optional ``generator`` for the split
samples. Per-face counts are never stored: :meth:`face_counts` recomputes them with ``bincount``.

Step numbering: ``step`` is the engine's 0-based step; the official 1-based iteration is
``step + 1`` and every schedule condition below is written on that iteration, exactly as in the
official ``train.py`` (densify when ``it > densify_from and it % interval == 0`` while
``it < densify_until``; opacity reset when ``it % reset_interval == 0`` or, for a white
background, ``it == densify_from``).

``info`` (from the renderer's meta plus the method): ``means2d`` (C, N, 2) with grad, ``radii``
(C, N, 2) or (C, N), ``width``, ``height``, ``n_cameras``, and ``face_scaling`` (F, 1) -- the
triangle scales k of the mesh the step rendered (the official code uses the mesh of the last
rendered timestep for densification, too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

#: the per-Gaussian parameter names the strategy expects
PARAM_NAMES = ("means", "scales", "quats", "opacities", "sh0", "shN")
#: the per-Gaussian state tensors resized in lock-step
PER_GAUSSIAN_STATE = ("binding", "grad2d", "count", "radii")


def quat_wxyz_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices of (unnormalised) wxyz quaternions.

    Args:
        q: (..., 4) wxyz.
    Returns:
        (..., 3, 3).
    """
    import roma

    q = torch.nn.functional.normalize(q, dim=-1)
    return roma.unitquat_to_rotmat(roma.quat_wxyz_to_xyzw(q))


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p / (1 - p))


# ---------------------------------------------------------------------------------------------
# low-level ops: every per-Gaussian parameter, its Adam moments and the per-Gaussian state
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def _update_params(params: dict[str, nn.Parameter], optimizers: dict[str, torch.optim.Optimizer],
                   param_fn: Callable[[str, torch.Tensor], torch.Tensor],
                   moment_fn: Callable[[str, torch.Tensor], torch.Tensor],
                   names: tuple[str, ...] | None = None) -> None:
    """Replace parameters (and their optimiser moments) by ``param_fn(name, p)`` /
    ``moment_fn(name, m)``. Adam's ``step`` counter is kept. The new parameters have no grad,
    so the optimiser skips them at this step (as the official code does)."""
    for name in names or tuple(params.keys()):
        old = params[name]
        new = nn.Parameter(param_fn(name, old.data), requires_grad=old.requires_grad)
        params[name] = new
        opt = optimizers.get(name)
        if opt is None:
            if old.requires_grad:
                raise ValueError(f"parameter {name!r} requires grad but has no optimizer")
            continue
        group = opt.param_groups[0]
        st = opt.state.pop(old, None)
        group["params"][0] = new
        if st is not None:
            for k, v in list(st.items()):
                if k != "step" and isinstance(v, torch.Tensor) and v.shape == old.shape:
                    st[k] = moment_fn(name, v)
            opt.state[new] = st


@torch.no_grad()
def append_gaussians(params, optimizers, state, new_values: dict[str, torch.Tensor],
                     new_state: dict[str, torch.Tensor]) -> None:
    """Append Gaussians. ``new_values[name]`` (M, ...) for every parameter; the new rows get zero
    optimiser moments; ``new_state[key]`` (M,) for the per-Gaussian state (zeros when absent)."""
    _update_params(params, optimizers,
                   lambda n, p: torch.cat([p, new_values[n].to(p)], 0),
                   lambda n, m: torch.cat([m, torch.zeros_like(new_values[n], dtype=m.dtype)], 0))
    m = next(iter(new_values.values())).shape[0]
    for k in PER_GAUSSIAN_STATE:
        v = state.get(k)
        if isinstance(v, torch.Tensor):
            add = new_state.get(k)
            if add is None:
                add = torch.zeros((m,) + tuple(v.shape[1:]), dtype=v.dtype, device=v.device)
            state[k] = torch.cat([v, add.to(v)], 0)


@torch.no_grad()
def keep_gaussians(params, optimizers, state, keep: torch.Tensor) -> None:
    """Keep only the Gaussians where ``keep`` (N,) bool is True (params, moments, state)."""
    _update_params(params, optimizers, lambda n, p: p[keep], lambda n, m: m[keep])
    for k in PER_GAUSSIAN_STATE:
        v = state.get(k)
        if isinstance(v, torch.Tensor):
            state[k] = v[keep]


def guarded_prune_mask(mask: torch.Tensor, binding: torch.Tensor, num_faces: int) -> torch.Tensor:
    """The prune guard: if pruning all flagged Gaussians would leave a face with none, none of
    that face's flagged Gaussians are pruned (all of them are kept, not just one).

    Args:
        mask: (N,) bool, flagged for pruning.
        binding: (N,) long parent faces.
    Returns:
        (N,) bool, the mask actually pruned.
    """
    counts = torch.bincount(binding, minlength=num_faces)
    flagged = torch.bincount(binding[mask], minlength=num_faces)
    face_keeps_some = (counts - flagged) > 0
    return mask & face_keeps_some[binding]


# ---------------------------------------------------------------------------------------------
@dataclass
class BindingStrategy:
    """GaussianAvatars' adaptive density control with binding inheritance (official defaults).

    Attributes:
        grow_grad2d: densify where the mean accumulated view-space gradient norm >= this.
        percent_dense: clone if the GLOBAL max scale <= percent_dense * scene_scale, else split.
        prune_opa: prune opacity below this.
        prune_scale3d: after the first reset, prune GLOBAL max scale > prune_scale3d * scene_scale.
        prune_scale2d_px: after the first reset, prune max screen radius > this (pixels).
        refine_start_iter: densify when iteration > this (strict) ...
        refine_stop_iter: ... and iteration < this (also: statistics and resets stop there).
        refine_every: ... and iteration % refine_every == 0.
        reset_every: opacity reset interval (while iteration < refine_stop_iter).
        reset_opacity_to: the reset sets opacity to min(opacity, this).
        extra_reset_at_start: an extra reset at iteration == refine_start_iter (official for a
            white background).
        prune_guard: never let pruning empty a face.
        split_n: children per split.
        split_offset: ``"official"`` samples the child offset eps ~ N(0, parent GLOBAL scale) and
            adds R(q_local) eps to the LOCAL mean (the official unit-mixing quirk);
            ``"local"`` samples eps ~ N(0, parent LOCAL scale exp(s)), i.e. in triangle units.
        screen_size_prune: ``"official"`` -- the screen radii are reset by densification before the
            prune test, so the 20 px rule never fires (the reference code's behaviour);
            ``"effective"`` -- the radii accumulated since the last densification are used.
        absgrad: use ``means2d.absgrad`` (gsplat) instead of ``means2d.grad``.
        verbose: print a line per densification.
    """

    grow_grad2d: float = 2e-4
    percent_dense: float = 0.01
    prune_opa: float = 0.005
    prune_scale3d: float = 0.1
    prune_scale2d_px: float = 20.0
    refine_start_iter: int = 10_000
    refine_stop_iter: int = 600_000
    refine_every: int = 2_000
    reset_every: int = 60_000
    reset_opacity_to: float = 0.01
    extra_reset_at_start: bool = True
    prune_guard: bool = True
    split_n: int = 2
    split_offset: str = "official"
    screen_size_prune: str = "official"
    absgrad: bool = False
    verbose: bool = False

    def __post_init__(self):
        if self.split_offset not in ("official", "local"):
            raise ValueError(f"split_offset must be 'official' or 'local', got {self.split_offset!r}")
        if self.screen_size_prune not in ("official", "effective"):
            raise ValueError(f"screen_size_prune must be 'official' or 'effective', got {self.screen_size_prune!r}")

    # ------------------------------------------------------------------ API
    def initialize_state(self, scene_scale: float = 1.0, *, binding: torch.Tensor | None = None,
                         num_faces: int | None = None,
                         generator: torch.Generator | None = None) -> dict[str, Any]:
        """State dict. ``binding`` (N,) long and ``num_faces`` are required before training."""
        state: dict[str, Any] = {"grad2d": None, "count": None, "radii": None,
                                 "scene_scale": float(scene_scale), "binding": binding,
                                 "num_faces": num_faces, "generator": generator}
        if binding is not None and num_faces is None:
            state["num_faces"] = int(binding.max()) + 1
        return state

    def check_sanity(self, params: dict[str, nn.Parameter], optimizers: dict[str, torch.optim.Optimizer]) -> None:
        missing = [k for k in PARAM_NAMES if k not in params]
        if missing:
            raise ValueError(f"params lack {missing} (expected {list(PARAM_NAMES)})")
        n = params["means"].shape[0]
        for k, p in params.items():
            if p.shape[0] != n:
                raise ValueError(f"params[{k!r}] has {p.shape[0]} rows, means has {n}")
            if p.requires_grad and k not in optimizers:
                raise ValueError(f"params[{k!r}] requires grad but has no optimizer")
        for k, opt in optimizers.items():
            if k not in params:
                raise ValueError(f"optimizer {k!r} has no parameter")
            if len(opt.param_groups) != 1 or len(opt.param_groups[0]["params"]) != 1:
                raise ValueError(f"optimizer {k!r} must have exactly one param group with one parameter")
            if opt.param_groups[0]["params"][0] is not params[k]:
                raise ValueError(f"optimizer {k!r} does not hold params[{k!r}]")

    def step_pre_backward(self, params, optimizers, state, step: int, info: dict[str, Any]) -> None:
        """Keep the gradient of the 2D means (they are a non-leaf tensor)."""
        if self._iteration(step) < self.refine_stop_iter:
            info["means2d"].retain_grad()

    def step_post_backward(self, params, optimizers, state, step: int, info: dict[str, Any],
                           packed: bool = False) -> dict[str, int]:
        """Accumulate statistics; densify/prune and reset opacity on schedule.

        Returns counts of what happened this step (``cloned``, ``split``, ``pruned``, ``guarded``,
        ``reset``, and the Gaussians each prune rule flagged before the guard: ``prune_opacity``,
        ``prune_world_size``, ``prune_screen_size``), all zero on ordinary steps.
        """
        it = self._iteration(step)
        report = {"cloned": 0, "split": 0, "pruned": 0, "guarded": 0, "reset": 0,
                  "prune_opacity": 0, "prune_world_size": 0, "prune_screen_size": 0}
        if it >= self.refine_stop_iter:
            return report
        self._update_state(params, state, info, packed)
        if it > self.refine_start_iter and it % self.refine_every == 0:
            report.update(self._refine(params, optimizers, state, it, info))
        if (self.reset_every > 0 and it % self.reset_every == 0) or \
                (self.extra_reset_at_start and it == self.refine_start_iter):
            self.reset_opacity(params, optimizers)
            report["reset"] = 1
        return report

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _iteration(step: int) -> int:
        return int(step) + 1

    @staticmethod
    def face_counts(state: dict[str, Any]) -> torch.Tensor:
        """(F,) number of Gaussians bound to each face, recomputed from the binding."""
        return torch.bincount(state["binding"], minlength=int(state["num_faces"]))

    @torch.no_grad()
    def _update_state(self, params, state, info, packed: bool) -> None:
        n = params["means"].shape[0]
        dev = params["means"].device
        for k in ("grad2d", "count", "radii"):
            if state[k] is None or state[k].shape[0] != n:
                state[k] = torch.zeros(n, device=dev, dtype=torch.float32)
        m2d = info["means2d"]
        grads = m2d.absgrad if self.absgrad else m2d.grad
        if grads is None:
            return
        grads = grads.detach().clone()
        n_cam = int(info.get("n_cameras", 1))
        grads[..., 0] *= info["width"] / 2.0 * n_cam
        grads[..., 1] *= info["height"] / 2.0 * n_cam
        radii = info["radii"]
        if packed:
            gs_ids = info["gaussian_ids"]
            r = radii if radii.dim() == 1 else radii.max(dim=-1).values
            sel = r > 0
            gs_ids, grads, r = gs_ids[sel], grads[sel], r[sel]
        else:
            r = radii if radii.dim() == 2 else radii.max(dim=-1).values  # (C, N)
            vis = (radii > 0) if radii.dim() == 2 else (radii > 0).all(dim=-1)
            cam_ids, gs_ids = torch.where(vis)
            grads = grads[cam_ids, gs_ids]
            r = r[cam_ids, gs_ids]
        state["grad2d"].index_add_(0, gs_ids, grads.norm(dim=-1).float())
        state["count"].index_add_(0, gs_ids, torch.ones_like(gs_ids, dtype=torch.float32))
        state["radii"].scatter_reduce_(0, gs_ids, r.float(), reduce="amax", include_self=True)

    @staticmethod
    def global_scales(params, state, face_scaling: torch.Tensor) -> torch.Tensor:
        """(N, 3) GLOBAL scales k[binding] * exp(s)."""
        k = face_scaling.reshape(-1, 1)
        return torch.exp(params["scales"].detach()) * k[state["binding"]]

    @torch.no_grad()
    def _refine(self, params, optimizers, state, it: int, info) -> dict[str, int]:
        face_scaling = info["face_scaling"].detach().reshape(-1, 1)
        scene_scale = state["scene_scale"]
        grads = state["grad2d"] / state["count"]
        grads[grads.isnan()] = 0.0
        high = grads >= self.grow_grad2d
        small = self.global_scales(params, state, face_scaling).max(dim=-1).values <= self.percent_dense * scene_scale
        # official order: clone first (clones get zero gradient so never split), then split
        clone_mask = high & small
        split_mask = high & ~small
        n_clone = int(clone_mask.sum())
        self.duplicate(params, optimizers, state, clone_mask)
        split_mask = torch.cat([split_mask, torch.zeros(n_clone, dtype=torch.bool, device=split_mask.device)])
        n_split = int(split_mask.sum())
        self.split(params, optimizers, state, split_mask, face_scaling)
        # densification resets the statistics (official densification_postfix); with the official
        # screen-size behaviour the radii are reset too, before the prune test below
        if self.screen_size_prune == "official":
            state["radii"].zero_()
        opac = torch.sigmoid(params["opacities"].detach()).reshape(-1)
        prune = opac < self.prune_opa
        flagged = {"prune_opacity": int(prune.sum()), "prune_world_size": 0, "prune_screen_size": 0}
        if it > self.reset_every:
            gmax = self.global_scales(params, state, face_scaling).max(dim=-1).values
            big_ws = gmax > self.prune_scale3d * scene_scale
            big_vs = state["radii"] > self.prune_scale2d_px
            flagged.update(prune_world_size=int(big_ws.sum()), prune_screen_size=int(big_vs.sum()))
            prune = prune | big_vs | big_ws
        n_flagged = int(prune.sum())
        n_pruned = self.remove(params, optimizers, state, prune)
        for k in ("grad2d", "count", "radii"):
            state[k].zero_()
        if self.verbose:
            print(f"[densify it={it}] clone {n_clone} split {n_split} prune {n_pruned} "
                  f"(guarded {n_flagged - n_pruned}) -> {params['means'].shape[0]} Gaussians")
        return {"cloned": n_clone, "split": n_split, "pruned": n_pruned, "guarded": n_flagged - n_pruned, **flagged}

    # ------------------------------------------------------------------ operations
    @torch.no_grad()
    def duplicate(self, params, optimizers, state, mask: torch.Tensor) -> None:
        """Clone: copy the selected Gaussians' LOCAL parameters; children keep binding[parent]."""
        if not bool(mask.any()):
            return
        new = {k: params[k].data[mask] for k in params}
        new_state = {"binding": state["binding"][mask]}
        if state.get("radii") is not None:
            new_state["radii"] = torch.zeros_like(state["radii"][mask])
        append_gaussians(params, optimizers, state, new, new_state)

    @torch.no_grad()
    def split(self, params, optimizers, state, mask: torch.Tensor, face_scaling: torch.Tensor) -> None:
        """Split each selected Gaussian into ``split_n`` children on the parent's face; the parent
        is removed (through the prune guard, which never blocks it since the children are there).

        Child local scale = (parent GLOBAL scale / k) / (0.8 * n); child local mean =
        R(q_local) eps + mu_local with eps ~ N(0, parent GLOBAL scale) (``split_offset='official'``)
        or N(0, exp(s)) (``'local'``). Rotation, SH and opacity are copied.
        """
        if not bool(mask.any()):
            return
        n = self.split_n
        k = face_scaling.reshape(-1, 1)[state["binding"][mask]]  # (S, 1)
        gscale = torch.exp(params["scales"].data[mask]) * k  # (S, 3) global
        std = gscale if self.split_offset == "official" else gscale / k
        std = std.repeat(n, 1)
        gen = state.get("generator")
        eps = torch.normal(torch.zeros_like(std), std, generator=gen)
        rot = quat_wxyz_to_rotmat(params["quats"].data[mask]).repeat(n, 1, 1)
        new = {key: params[key].data[mask].repeat(n, *([1] * (params[key].dim() - 1))) for key in params}
        new["means"] = torch.bmm(rot, eps[..., None])[..., 0] + params["means"].data[mask].repeat(n, 1)
        new["scales"] = torch.log((gscale / k).repeat(n, 1) / (0.8 * n))
        new_state = {"binding": state["binding"][mask].repeat(n)}
        append_gaussians(params, optimizers, state, new, new_state)
        m = mask.shape[0]
        parent = torch.cat([mask, torch.zeros(params["means"].shape[0] - m, dtype=torch.bool, device=mask.device)])
        self.remove(params, optimizers, state, parent)

    @torch.no_grad()
    def remove(self, params, optimizers, state, mask: torch.Tensor) -> int:
        """Prune the flagged Gaussians, through the prune guard when enabled. Returns the count."""
        if self.prune_guard:
            mask = guarded_prune_mask(mask, state["binding"], int(state["num_faces"]))
        n = int(mask.sum())
        if n:
            keep_gaussians(params, optimizers, state, ~mask)
        return n

    @torch.no_grad()
    def reset_opacity(self, params, optimizers) -> None:
        """opacity <- min(opacity, reset_opacity_to); the opacity's Adam moments are zeroed."""
        value = _logit(torch.tensor(self.reset_opacity_to)).item()
        _update_params(params, optimizers, lambda n, p: torch.clamp_max(p, value),
                       lambda n, m: torch.zeros_like(m), names=("opacities",))


def camera_extent(centers: torch.Tensor, factor: float = 1.1) -> float:
    """``cameras_extent`` of 3DGS (``getNerfppNorm``): factor x the largest distance of a camera
    centre from the mean of the centres.

    Args:
        centers: (C, 3) camera centres.
    """
    c = centers.to(torch.float64)
    d = (c - c.mean(dim=0, keepdim=True)).norm(dim=-1).max()
    return float(d) * factor


__all__ = ["BindingStrategy", "camera_extent", "guarded_prune_mask", "append_gaussians", "keep_gaussians",
           "quat_wxyz_to_rotmat", "PARAM_NAMES"]
