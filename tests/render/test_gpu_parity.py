"""gsplat (CUDA) vs the torch backend: forward images and gradients on random scenes.

Runs only with CUDA and gsplat (``pytest -m gpu tests/render``). With
``AVATARBENCH_RECORD_PARITY=1`` the measured differences are written to
``results/bench/render_parity_<gpu name>.json``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from avatarbench.render import rasterize

from .scenes import PARAM_KEYS, random_scene, render_and_grads

pytestmark = pytest.mark.gpu

_RECORDS: list[dict] = []


def _gsplat_ok() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except Exception:
        return False
    return True


requires_gsplat = pytest.mark.skipif(not _gsplat_ok(), reason="needs CUDA and gsplat")


def _head_scene(n: int, res: int) -> dict:
    from avatarbench.render.benchmark import make_head_scene

    return make_head_scene(n, res, device="cpu", dtype=torch.float64)


def _to_cuda32(sc: dict) -> dict:
    return {k: (v.to("cuda", torch.float32) if torch.is_tensor(v) else v) for k, v in sc.items()}


def _stats(a: torch.Tensor, b: torch.Tensor) -> dict:
    a, b = a.double().flatten(), b.double().flatten()
    scale = float(b.abs().max()) or 1.0
    diff = (a - b).abs()
    cos = float(torch.nn.functional.cosine_similarity(a, b, dim=0)) if float(b.norm()) > 0 else 1.0
    return {"max_abs": float(diff.max()), "max_rel_to_max": float(diff.max()) / scale,
            "p999_rel_to_max": float(torch.quantile(diff[:1_000_000], 0.999)) / scale, "cosine": cos}


SCENES = {
    "random_c2_bg": lambda: (random_scene(n=300, n_cameras=2, width=96, height=80, seed=0), True, {}),
    "random_d32": lambda: (random_scene(n=300, n_cameras=1, width=64, height=48, channels=32, seed=1), True, {}),
    "random_sh3_rgbed": lambda: (dict(random_scene(n=300, n_cameras=2, width=64, height=48, seed=2),
                                      colors=0.5 * torch.randn(300, 16, 3, dtype=torch.float64)), False,
                                 {"sh_degree": 3, "render_mode": "RGB+ED"}),
    "head_20k_256": lambda: (_head_scene(20000, 256), False, {}),
}


@requires_gsplat
@pytest.mark.parametrize("name", list(SCENES))
def test_gsplat_vs_torch_backend(name):
    sc64, with_bg, kwargs = SCENES[name]()
    sc = _to_cuda32(sc64)
    C = sc["viewmats"].shape[0]
    D = sc["colors"].shape[-1] if kwargs.get("sh_degree") is None else 3
    bg = torch.rand(C, D, device="cuda") if with_bg else None

    def backend(name_):
        return lambda *a, **k: rasterize(*a, backend=name_, **k)

    cg, ag, mg, gg = render_and_grads(backend("gsplat"), sc, backgrounds=bg, **kwargs)
    ct, at, mt, gt = render_and_grads(backend("torch"), sc, backgrounds=bg, **kwargs)
    assert mg["backend"] == "gsplat" and mt["backend"] == "torch"

    rec = {"scene": name, "device": torch.cuda.get_device_name(), "n": int(sc["means"].shape[0]),
           "images": _stats(ct, cg), "alphas": _stats(at, ag),
           "radii_equal_fraction": float((mt["radii"] == mg["radii"].to(mt["radii"].dtype)).float().mean())}
    vis = (mg["radii"] > 0).all(-1)
    rec["means2d"] = _stats(mt["means2d"].detach()[vis], mg["means2d"].detach()[vis])
    rec["conics"] = _stats(mt["conics"].detach()[vis], mg["conics"].detach()[vis])
    for k in PARAM_KEYS + ("means2d", "backgrounds"):
        if gg[k] is not None and gt[k] is not None:
            rec[f"grad_{k}"] = _stats(gt[k], gg[k])
    _RECORDS.append(rec)

    # float32 rounding may flip a Gaussian across alpha = 1/255 at a few pixels (a step of
    # about 1/255 there), so the max is loose and the 99.9th percentile tight
    assert rec["images"]["max_abs"] < 1e-2 and rec["images"]["p999_rel_to_max"] < 1e-4
    assert rec["alphas"]["max_abs"] < 1e-2 and rec["alphas"]["p999_rel_to_max"] < 1e-4
    assert rec["radii_equal_fraction"] > 0.999
    assert rec["means2d"]["max_rel_to_max"] < 1e-5
    for k, v in rec.items():
        if k.startswith("grad_"):
            assert v["cosine"] > 0.999, (k, v)
            assert v["p999_rel_to_max"] < 1e-2, (k, v)


@requires_gsplat
def test_auto_backend_uses_gsplat_on_cuda():
    sc = _to_cuda32(random_scene(n=20, n_cameras=1))
    _, _, meta = rasterize(sc["means"], sc["quats"], sc["scales"], sc["opacities"], sc["colors"], sc["viewmats"],
                           sc["Ks"], sc["width"], sc["height"])
    assert meta["backend"] == "gsplat"
    assert meta["radii"].shape == (1, 20, 2)


def teardown_module(module):
    if _RECORDS and os.environ.get("AVATARBENCH_RECORD_PARITY"):
        out = Path(__file__).resolve().parents[2] / "results" / "bench"
        out.mkdir(parents=True, exist_ok=True)
        dev = re.sub(r"[^A-Za-z0-9]+", "_", _RECORDS[0]["device"]).strip("_").lower()
        (out / f"render_parity_{dev}.json").write_text(json.dumps(_RECORDS, indent=2))
