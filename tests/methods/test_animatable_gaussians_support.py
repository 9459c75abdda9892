"""Shared helpers (no tests) for the Animatable Gaussians / lbs_gaussians tests: a tiny SMPL-X-format
model file and a tiny in-memory body subject (no images on disk), so method tests run in seconds
without generating the synthetic body dataset."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from avatarbench.data.camera import Camera
from avatarbench.data.subject import Frame, Subject
from avatarbench.paths import configs_dir

W, H = 24, 32


def ellipsoid_mesh(radii=(0.25, 0.8, 0.15), n_lat: int = 12, n_lon: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """A closed UV ellipsoid: verts (V, 3), faces (F, 3) counter-clockwise seen from outside."""
    verts = [[0.0, radii[1], 0.0]]
    for i in range(1, n_lat):
        th = math.pi * i / n_lat
        for j in range(n_lon):
            ph = 2 * math.pi * j / n_lon
            verts.append([radii[0] * math.sin(th) * math.cos(ph), radii[1] * math.cos(th),
                          radii[2] * math.sin(th) * math.sin(ph)])
    verts.append([0.0, -radii[1], 0.0])
    v = np.asarray(verts)
    faces = []
    ring = lambda i, j: 1 + (i - 1) * n_lon + (j % n_lon)  # noqa: E731
    for j in range(n_lon):
        faces.append([0, ring(1, j + 1), ring(1, j)])
        faces.append([len(v) - 1, ring(n_lat - 1, j), ring(n_lat - 1, j + 1)])
    for i in range(1, n_lat - 1):
        for j in range(n_lon):
            a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
            faces += [[a, b, d], [a, d, c]]
    f = np.asarray(faces, dtype=np.int64)
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    if (np.einsum("ij,ij->i", n, v[f].mean(1)) < 0).mean() > 0.5:
        f = f[:, [0, 2, 1]]
    return v, f


#: with ``spread_joints``: joint j is regressed from vertex ``SPREAD_VERTEX[j]`` alone
def spread_vertex(j: int, V: int) -> int:
    return (37 * j + 11) % V


def write_tiny_smplx(path: Path, spread_joints: bool = False, expression_dirs: bool = False) -> Path:
    """A tiny SMPL-X-format ``.npz`` (55 joints, an ellipsoid 'body' with one-hot skinning weights:
    top -> spine3 (9), bottom left/right -> left/right hip (1/2), middle -> pelvis (0)); no pose
    correctives.

    Joints: all at the centroid (uniform regressor), or with ``spread_joints`` each joint ``j`` at
    vertex :func:`spread_vertex` (distinct locations, so rotation centres matter). With
    ``expression_dirs`` the first expression coefficient moves every vertex by (0.02, 0.01, 0) per
    unit (and so every joint)."""
    v, f = ellipsoid_mesh()
    V = v.shape[0]
    w = np.zeros((V, 55))
    for i, p in enumerate(v):
        j = 9 if p[1] > 0.25 else (1 if p[0] >= 0 else 2) if p[1] < -0.25 else 0
        w[i, j] = 1.0
    parents = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
                        20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
                        21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53])
    shapedirs = np.zeros((V, 3, 20))
    shapedirs[:, 1, 0] = 0.01 * v[:, 1]  # beta 0: height
    if expression_dirs:
        shapedirs[:, 0, 10] = 0.02
        shapedirs[:, 1, 10] = 0.01
    if spread_joints:
        jr = np.zeros((55, V))
        jr[np.arange(55), [spread_vertex(j, V) for j in range(55)]] = 1.0
    else:
        jr = np.full((55, V), 1.0 / V)
    np.savez(path, v_template=v, f=f, shapedirs=shapedirs, posedirs=np.zeros((V, 3, 486)),
             J_regressor=jr, weights=w, kintree_table=np.stack([parents, np.arange(55)]))
    return path


def ring_camera(cid: int, angle: float, dist: float = 3.0) -> Camera:
    eye = [dist * math.sin(angle), 0.0, dist * math.cos(angle)]
    f = 1.8 * H
    return Camera.look_at(eye, [0.0, 0.0, 0.0], f, f, W / 2, H / 2, W, H, up=(0.0, -1.0, 0.0), id=cid)  # the camera these tests were written with


def body_driving(t: int) -> dict[str, np.ndarray]:
    bp = np.zeros(63, np.float32)
    bp[2] = 0.3 + 0.1 * t      # left hip about z
    bp[5] = -0.3 - 0.05 * t    # right hip
    bp[26] = 0.2 * math.sin(t)  # spine3 about z
    return {"betas": np.zeros(10, np.float32), "global_orient": np.array([0.0, 0.2 * t, 0.0], np.float32),
            "transl": np.array([0.01 * t, 0.0, 0.0], np.float32), "body_pose": bp,
            "jaw_pose": np.zeros(3, np.float32), "expression": np.zeros(10, np.float32),
            "left_hand_pose": np.zeros(45, np.float32), "right_hand_pose": np.zeros(45, np.float32)}


def tiny_body_subject(tmp_path: Path, n_train: int = 3, n_novel: int = 2, n_cams: int = 3) -> Subject:
    """An in-memory body subject (no image files) on :func:`write_tiny_smplx`'s model."""
    model = write_tiny_smplx(Path(tmp_path) / "SMPLX_NEUTRAL.npz")
    cams = {i: ring_camera(i, 2 * math.pi * i / n_cams) for i in range(n_cams)}

    def frames(ts, split):
        return [Frame("tiny", "seq", t, cams[c], None, None, body_driving(t)) for t in ts for c in cams]

    return Subject("tiny", "body", Path(tmp_path), cams,
                   {"train": frames(range(n_train), "train"), "novel_view": [],
                    "self_reenact": frames(range(n_train, n_train + n_novel), "self_reenact"), "cross_reenact": []},
                   body_model="smplx", body_model_path=model, canonical={"betas": np.zeros(10, np.float32)})


def fake_sample_tensors(frame: Frame, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic (image (H, W, 3), mask (H, W, 1)) pair: a coloured ellipse on white."""
    yy, xx = torch.meshgrid(torch.arange(frame.camera.height), torch.arange(frame.camera.width), indexing="ij")
    m = ((((xx - W / 2) / 5.0) ** 2 + ((yy - H / 2) / 13.0) ** 2) < 1).float()[..., None]
    col = torch.tensor([0.2 + 0.1 * (seed % 3), 0.4, 0.7])
    return m * col + (1 - m), m


def method_cfg(name: str, overrides: dict | None = None):
    node = OmegaConf.load(configs_dir() / "methods" / f"{name}.yaml").method
    cfg = OmegaConf.merge(node, OmegaConf.create(overrides or {}))
    cfg.render_backend = "torch"
    return cfg


def tiny_ag_cfg(**extra):
    """Animatable Gaussians at toy size (SMPL-X template, 32^2 maps, tiny StyleUNets)."""
    base = {"lbs_volume": {"resolution": 16, "iterations": 5},
            "template": {"kind": "smplx", "resolution": [16, 16, 8], "iterations": 5},
            "maps": {"size": 32},
            "network": {"styleunet": {"style_dim": 8, "min_size": 4, "channel_base": 64, "channel_multiplier": 2,
                                      "max_channels": 8, "viewdir_hidden": 4}, "mlp": {"hidden": 16, "layers": 2}},
            "loss": {"lpips": 0.0},
            "train": {"pretrain_iterations": 1, "iterations": 3, "lr": 1e-3, "boundary_band": {"kernel": 3}}}
    return method_cfg("animatable_gaussians", OmegaConf.to_container(OmegaConf.merge(base, extra)))
