"""Standard 3DGS PLY files with GaussianAvatars' ``binding_0`` property.

Layout (one ``vertex`` element, float32 properties, in this order, as 3DGS / GaussianAvatars
write it): ``x y z nx ny nz f_dc_0..2 f_rest_0..(3(K-1)-1) opacity scale_0..2 rot_0..3 binding_0``.
``f_rest`` is channel-major (all R coefficients, then G, then B); ``opacity`` is the logit,
``scale_*`` the log scale, ``rot_*`` a wxyz quaternion; normals are zero.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from avatarbench.errors import DataError


def ply_attribute_names(num_rest: int, with_binding: bool = True) -> list[str]:
    """Property names for ``num_rest`` = K-1 higher SH coefficients per channel."""
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * num_rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    if with_binding:
        names.append("binding_0")
    return names


def write_gaussian_ply(path: str | Path, means: torch.Tensor, sh0: torch.Tensor, shN: torch.Tensor,
                       opacity_logits: torch.Tensor, log_scales: torch.Tensor, quats: torch.Tensor,
                       binding: torch.Tensor | None = None) -> Path:
    """Write a 3DGS PLY.

    Args:
        means: (N, 3); sh0: (N, 1, 3); shN: (N, K-1, 3); opacity_logits: (N,) or (N, 1);
        log_scales: (N, 3); quats: (N, 4) wxyz; binding: (N,) parent face or None.
    """
    from plyfile import PlyData, PlyElement

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = means.shape[0]

    def np32(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().to(torch.float32).numpy()

    cols = [np32(means), np.zeros((n, 3), np.float32),
            np32(sh0.transpose(1, 2).reshape(n, -1)), np32(shN.transpose(1, 2).reshape(n, -1)),
            np32(opacity_logits.reshape(n, 1)), np32(log_scales), np32(quats)]
    if binding is not None:
        cols.append(binding.detach().cpu().numpy().astype(np.float32).reshape(n, 1))
    data = np.concatenate(cols, axis=1)
    names = ply_attribute_names(shN.shape[1], binding is not None)
    assert data.shape[1] == len(names)
    el = np.empty(n, dtype=[(a, "f4") for a in names])
    for i, a in enumerate(names):
        el[a] = data[:, i]
    PlyData([PlyElement.describe(el, "vertex")]).write(str(path))
    return path


def read_gaussian_ply(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a PLY written by :func:`write_gaussian_ply` (or by 3DGS / GaussianAvatars).

    Returns:
        dict with ``means`` (N,3), ``sh0`` (N,1,3), ``shN`` (N,K-1,3), ``opacities`` (N,) logits,
        ``scales`` (N,3) log, ``quats`` (N,4) wxyz and ``binding`` (N,) long when present.
    """
    from plyfile import PlyData

    path = Path(path)
    try:
        v = PlyData.read(str(path))["vertex"]
    except Exception as e:  # noqa: BLE001
        raise DataError(path, f"cannot be read as a PLY with a 'vertex' element ({e})", "a 3DGS PLY") from None
    props = [p.name for p in v.properties]
    need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "rot_0"]
    missing = [p for p in need if p not in props]
    if missing:
        raise DataError(path, f"lacks properties {missing}", "the 3DGS vertex properties")

    def col(names):
        return torch.from_numpy(np.stack([np.asarray(v[n], dtype=np.float32) for n in names], axis=1))

    n = len(v["x"])
    rest = sorted([p for p in props if p.startswith("f_rest_")], key=lambda s: int(s.split("_")[-1]))
    if len(rest) % 3:
        raise DataError(path, f"has {len(rest)} f_rest properties", "a multiple of 3")
    out = {
        "means": col(["x", "y", "z"]),
        "sh0": col(["f_dc_0", "f_dc_1", "f_dc_2"]).reshape(n, 3, 1).transpose(1, 2).contiguous(),
        "shN": (col(rest).reshape(n, 3, len(rest) // 3).transpose(1, 2).contiguous() if rest
                else torch.zeros(n, 0, 3)),
        "opacities": col(["opacity"])[:, 0],
        "scales": col(sorted([p for p in props if p.startswith("scale_")])),
        "quats": col(sorted([p for p in props if p.startswith("rot_")])),
    }
    if "binding_0" in props:
        out["binding"] = torch.from_numpy(np.asarray(v["binding_0"])).round().long()
    return out
