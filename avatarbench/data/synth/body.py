"""Synthetic multi-view body subjects in the AvatarReX layout, with exact ground truth.

:func:`ensure_synthetic_body` writes (once, cached, atomically) a subject folder that
:func:`avatarbench.data.avatarrex.load_avatarrex` reads like a real AvatarReX capture::

    <cache>/synthetic/body/<VERSION>/<preset>/<name>/
      calibration_full.json             12 cameras on a ring around the subject
      smpl_params.npz                   SMPL-X parameters of every frame (exact, not fitted)
      <serial>/%08d.jpg                 images (foreground colour where alpha > 0, grey backdrop)
      <serial>/mask/pha/%08d.jpg        alpha mattes
      gt_mesh/%08d.npy, gt_mesh/faces.npy   ground-truth posed mesh per frame (non-standard)
      avatarbench_subject.json          name, synthetic: true, body model, splits, ...

Ground truth comes from the INDEPENDENT mesh rasterizer (:mod:`avatarbench.data.synth.mesh_raster`),
never the Gaussian renderer. The body is the procedural SMPL-X stand-in
(:mod:`avatarbench.bodymodels.smplx_synthetic`, written to the cache and named by
``body_model_path``) posed with the subject's betas; its skirt additionally flares with the leg
spread and lags the root motion (a non-LBS deformation), so the tracked model alone does not
explain the garment. Appearance is procedural (shirt stripes/checks, skirt dots/tartan, skin,
hair, eyes, lips, shoes), Lambert-shaded with fixed world lights (pose-dependent shading).

Subjects: ``synth_body_a`` (alias ``synth_body``; walking while turning + arm swings; novel
poses: squat, jumping jack, twist, kick) and ``synth_body_b`` (different betas and look; side
steps + punches; novel poses: arms overhead, lunge, forward bend, wave) for cross-driving.

Frames ``0 .. n_train-1`` are training poses, ``n_train .. n_train+n_novel-1`` novel poses; all
frames are rendered from all cameras. Splits: train = training cameras x training frames,
novel_view = the 2 held-out cameras x training frames, self_reenact = held-out cameras x novel
poses.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

VERSION = "v1"
NUM_CAMERAS = 12
TEST_CAMERAS = (1, 8)
SUBJECT_NAMES = ("synth_body_a", "synth_body_b")
ALIASES = {"synth_body": "synth_body_a"}


@dataclass(frozen=True)
class BodyPreset:
    """Size of a generated subject.

    Attributes:
        width, height: image size in pixels.
        n_train: training frames; n_novel: novel-pose frames.
        supersample: rasterizer samples per pixel along each axis.
        jpeg_quality: JPEG quality of images and masks (4:4:4 chroma).
    """

    width: int
    height: int
    n_train: int
    n_novel: int
    supersample: int = 3
    jpeg_quality: int = 95


PRESETS: dict[str, BodyPreset] = {
    "smoke": BodyPreset(width=128, height=128, n_train=20, n_novel=8),
    "standard": BodyPreset(width=384, height=384, n_train=60, n_novel=20),
    "tiny": BodyPreset(width=48, height=64, n_train=3, n_novel=2, supersample=2),  # tests / study smoke runs
}


@dataclass(frozen=True)
class Appearance:
    """Procedural look (linear RGB in [0, 1])."""

    skin: tuple
    hair: tuple
    shirt: tuple
    shirt_alt: tuple
    shirt_pattern: str       # "stripes" | "checks"
    skirt: tuple
    skirt_alt: tuple
    skirt_pattern: str       # "dots" | "tartan"
    legs: tuple
    shoes: tuple
    iris: tuple
    lips: tuple


@dataclass(frozen=True)
class SubjectDef:
    betas: tuple
    appearance: Appearance
    train_motion: str
    novel_motion: str
    seed: int


SUBJECTS: dict[str, SubjectDef] = {
    "synth_body_a": SubjectDef(
        betas=(0.0, 0.2, -0.4, 0.3, 0.8, 0.0, 0.0, 0.2, 0.6, 0.0),
        appearance=Appearance(skin=(0.86, 0.66, 0.54), hair=(0.23, 0.13, 0.07), shirt=(0.12, 0.24, 0.62),
                              shirt_alt=(0.92, 0.92, 0.88), shirt_pattern="stripes", skirt=(0.93, 0.74, 0.12),
                              skirt_alt=(0.97, 0.97, 0.95), skirt_pattern="dots", legs=(0.16, 0.16, 0.18),
                              shoes=(0.55, 0.1, 0.1), iris=(0.25, 0.45, 0.3), lips=(0.72, 0.3, 0.32)),
        train_motion="walk_turn", novel_motion="novel_a", seed=11),
    "synth_body_b": SubjectDef(
        betas=(0.8, 1.0, 1.2, 0.4, -0.6, 0.3, 0.6, 1.0, -0.4, 0.5),
        appearance=Appearance(skin=(0.55, 0.37, 0.26), hair=(0.05, 0.05, 0.05), shirt=(0.7, 0.12, 0.12),
                              shirt_alt=(0.2, 0.05, 0.05), shirt_pattern="checks", skirt=(0.1, 0.38, 0.2),
                              skirt_alt=(0.75, 0.2, 0.15), skirt_pattern="tartan", legs=(0.22, 0.3, 0.5),
                              shoes=(0.9, 0.9, 0.88), iris=(0.3, 0.2, 0.1), lips=(0.45, 0.2, 0.2)),
        train_motion="box_step", novel_motion="novel_b", seed=23),
}


# ------------------------------------------------------------------------------------------ poses
def _rv(m: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(m).as_rotvec()


def _rot(axis: str, angle: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler(axis, angle).as_matrix()


class _Pose:
    """Per-joint local rotations of one frame, composed from elementary rotations."""

    def __init__(self):
        from avatarbench.bodymodels.smplx import JOINT_NAMES

        self.names = JOINT_NAMES
        self.R = np.tile(np.eye(3), (len(JOINT_NAMES), 1, 1))

    def apply(self, joint: str, axis: str, angle: float) -> "_Pose":
        """Left-multiply joint's rotation by a rotation about a parent-frame axis."""
        j = self.names.index(joint)
        self.R[j] = _rot(axis, angle) @ self.R[j]
        return self

    def arm(self, side: str, lower: float, swing: float = 0.0, elbow: float = 0.0, out: float = 0.0) -> "_Pose":
        """Lower the arm from T-pose (radians, pi/2 = along the body), swing it forward, bend the
        elbow forward, raise it sideways (``out``: negative lower)."""
        s = 1.0 if side == "left" else -1.0
        self.apply(f"{side}_shoulder", "z", -s * lower)
        self.apply(f"{side}_shoulder", "x", -swing)
        self.apply(f"{side}_elbow", "y", -s * elbow)
        return self

    def leg(self, side: str, flex: float, knee: float, spread: float = 0.0, ankle: float = 0.0) -> "_Pose":
        """Hip flexion forward (radians), knee bend, sideways spread, ankle flex."""
        s = 1.0 if side == "left" else -1.0
        self.apply(f"{side}_hip", "z", s * spread)
        self.apply(f"{side}_hip", "x", -flex)
        self.apply(f"{side}_knee", "x", knee)
        self.apply(f"{side}_ankle", "x", ankle)
        return self

    def fingers(self, curl: float) -> "_Pose":
        for side, s in (("left", -1.0), ("right", 1.0)):
            for f in ("index", "middle", "ring", "pinky"):
                for k in (1, 2, 3):
                    self.apply(f"{side}_{f}{k}", "z", s * curl * (1.0 if k > 1 else 0.7))
            self.apply(f"{side}_thumb2", "y", -s * 0.4 * curl)
        return self

    def body_pose(self) -> np.ndarray:
        return np.concatenate([_rv(self.R[j]) for j in range(1, 22)])

    def hand_pose(self, side: str) -> np.ndarray:
        start = 25 if side == "left" else 40
        return np.concatenate([_rv(self.R[j]) for j in range(start, start + 15)])

    def jaw(self) -> np.ndarray:
        return _rv(self.R[22])


def _walk_turn(t: int, n: int, rng_phase: float) -> tuple[_Pose, float]:
    ph = 2 * math.pi * (rng_phase + 0.37 * t)
    p = _Pose()
    swing_amp = 0.3 + 0.3 * (0.5 + 0.5 * math.sin(4 * math.pi * t / max(n, 1)))
    p.leg("left", 0.45 * math.sin(ph), 0.05 + 0.7 * max(0.0, math.sin(ph + 1.3)), ankle=0.15 * math.sin(ph))
    p.leg("right", -0.45 * math.sin(ph), 0.05 + 0.7 * max(0.0, math.sin(ph + 1.3 + math.pi)),
          ankle=-0.15 * math.sin(ph))
    p.arm("left", 1.25, swing=-swing_amp * math.sin(ph), elbow=0.3 + 0.25 * max(0.0, -math.sin(ph)))
    p.arm("right", 1.25, swing=swing_amp * math.sin(ph), elbow=0.3 + 0.25 * max(0.0, math.sin(ph)))
    if t % 5 == 3:  # an arm-swing episode: the left arm raised forward
        p.apply("left_shoulder", "x", -0.9)
    p.apply("spine1", "y", 0.12 * math.sin(ph))
    p.apply("head", "x", 0.1 * math.sin(2 * ph))
    p.fingers(0.2 + 0.3 * (0.5 + 0.5 * math.sin(0.7 * t)))
    yaw = 2 * math.pi * 0.8 * t / max(n, 1)
    return p, yaw


def _novel_a(u: int, m: int, rng_phase: float) -> tuple[_Pose, float]:
    a = 0.75 + 0.25 * (u // 4) / max(1, (m - 1) // 4)
    p = _Pose()
    mode = u % 4
    if mode == 0:  # squat, arms forward
        for s in ("left", "right"):
            p.leg(s, 1.0 * a, 1.7 * a, ankle=-0.35 * a)
            p.arm(s, 0.25, swing=1.2 * a)
    elif mode == 1:  # jumping jack: legs apart, arms above the shoulders
        p.leg("left", 0.0, 0.05, spread=0.35 * a)
        p.leg("right", 0.0, 0.05, spread=0.35 * a)
        p.arm("left", -0.6 * a)
        p.arm("right", -0.6 * a)
    elif mode == 2:  # torso twist with bent arms
        for j in ("spine1", "spine2", "spine3"):
            p.apply(j, "y", 0.28 * a)
        p.arm("left", 1.35, elbow=1.3 * a)
        p.arm("right", 1.35, elbow=1.3 * a)
        p.leg("left", 0.1, 0.2)
        p.leg("right", -0.1, 0.2)
    else:  # front kick, arms out
        p.leg("left", 1.1 * a, 0.15)
        p.leg("right", -0.1, 0.2)
        p.arm("left", 0.6, swing=-0.3)
        p.arm("right", 0.6, swing=0.3)
        p.apply("spine1", "x", -0.15)
    p.fingers(0.6 * (u % 2))
    return p, 0.6 + 1.9 * u + rng_phase


def _box_step(t: int, n: int, rng_phase: float) -> tuple[_Pose, float]:
    ph = 2 * math.pi * (rng_phase + 0.29 * t)
    p = _Pose()
    step = math.sin(ph)
    p.leg("left", 0.15, 0.25 + 0.15 * max(0.0, step), spread=0.12 + 0.12 * max(0.0, step))
    p.leg("right", 0.15, 0.25 + 0.15 * max(0.0, -step), spread=0.12 + 0.12 * max(0.0, -step))
    punch_l = 0.5 + 0.5 * math.sin(ph + 0.5)
    punch_r = 1.0 - punch_l
    p.arm("left", 1.2, swing=0.8 + 0.6 * punch_l, elbow=1.5 - 1.3 * punch_l)
    p.arm("right", 1.2, swing=0.8 + 0.6 * punch_r, elbow=1.5 - 1.3 * punch_r)
    p.apply("spine2", "y", 0.25 * (punch_r - punch_l))
    p.apply("spine1", "x", 0.1)
    p.fingers(1.0)
    return p, -2 * math.pi * 0.7 * t / max(n, 1)


def _novel_b(u: int, m: int, rng_phase: float) -> tuple[_Pose, float]:
    a = 0.8 + 0.2 * (u // 4) / max(1, (m - 1) // 4)
    p = _Pose()
    mode = u % 4
    if mode == 0:  # arms overhead
        p.arm("left", -1.1 * a)
        p.arm("right", -1.1 * a)
    elif mode == 1:  # lunge
        p.leg("left", 0.8 * a, 1.2 * a, ankle=-0.2)
        p.leg("right", -0.45 * a, 0.35)
        p.arm("left", 1.3, elbow=0.5)
        p.arm("right", 1.3, elbow=0.5)
    elif mode == 2:  # forward bend
        for j in ("spine1", "spine2", "spine3"):
            p.apply(j, "x", 0.35 * a)
        p.arm("left", 1.45, swing=0.6)
        p.arm("right", 1.45, swing=0.6)
    else:  # wave
        p.arm("right", -0.4 * a, elbow=0.0)
        p.apply("right_elbow", "z", 1.2 * a)
        p.arm("left", 1.4)
        p.leg("left", 0.05, 0.1)
        p.leg("right", -0.05, 0.1)
    p.fingers(0.3 * (u % 3))
    return p, -1.0 - 1.7 * u + rng_phase


MOTIONS = {"walk_turn": _walk_turn, "novel_a": _novel_a, "box_step": _box_step, "novel_b": _novel_b}


def make_motion(sd: SubjectDef, n_train: int, n_novel: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-frame SMPL-X parameters (without ``transl``'s height, set later by ground contact).

    Returns:
        key -> (F, D) float64 arrays (F = n_train + n_novel) for the smpl_params keys.
    """
    rng = np.random.default_rng(sd.seed + 1000 * seed)
    ph0 = float(rng.uniform(0, 1))
    F = n_train + n_novel
    out = {k: np.zeros((F, d)) for k, d in (("global_orient", 3), ("transl", 3), ("body_pose", 63), ("jaw_pose", 3),
                                             ("expression", 10), ("left_hand_pose", 45), ("right_hand_pose", 45))}
    expr_phase = rng.uniform(0, 2 * math.pi, size=10)
    for f in range(F):
        if f < n_train:
            pose, yaw = MOTIONS[sd.train_motion](f, n_train, ph0)
            ang = 2 * math.pi * f / max(n_train, 1)
            out["transl"][f] = [0.15 * math.cos(ang), 0.0, 0.15 * math.sin(ang)]
        else:
            pose, yaw = MOTIONS[sd.novel_motion](f - n_train, n_novel, ph0)
            out["transl"][f] = [0.08 * math.sin(f), 0.0, 0.08 * math.cos(1.3 * f)]
        pose.apply("jaw", "x", 0.12 * (0.5 + 0.5 * math.sin(1.3 * f + ph0)))
        out["global_orient"][f] = _rv(_rot("y", yaw))
        out["body_pose"][f] = pose.body_pose()
        out["jaw_pose"][f] = pose.jaw()
        out["left_hand_pose"][f] = pose.hand_pose("left")
        out["right_hand_pose"][f] = pose.hand_pose("right")
        out["expression"][f] = 0.8 * np.sin(0.5 * f + expr_phase)
    return out


# ------------------------------------------------------------------------------------------ cameras
def ring_cameras(width: int, height: int, seed: int = 0):
    """12 cameras on a 3.2 m ring around the origin, alternating 1.0 / 1.7 m high, aimed at the
    body centre (y = 1.0 m), with small deterministic calibration imperfections.

    Returns:
        list of :class:`~avatarbench.data.camera.Camera` (OpenCV world-to-camera; world y up).
    """
    from avatarbench.data.camera import Camera

    rng = np.random.default_rng(4242 + seed)
    cams = []
    base_f = 150.0 * height / 128.0
    for i in range(NUM_CAMERAS):
        jit = rng.uniform(-1, 1, size=6)
        az = 2 * math.pi * i / NUM_CAMERAS + math.radians(2.0 * jit[0])
        hgt = (1.0 if i % 2 == 0 else 1.7) + 0.05 * jit[1]
        r = 3.2 * (1 + 0.02 * jit[2])
        center = np.array([r * math.sin(az), hgt, r * math.cos(az)])
        target = np.array([0.02 * jit[3], 1.0, 0.02 * jit[4]])
        fwd = target - center
        fwd /= np.linalg.norm(fwd)
        right = np.cross(fwd, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        down = np.cross(fwd, right)
        R = np.stack([right, down, fwd], 0)
        w2c = np.eye(4)
        w2c[:3, :3] = R
        w2c[:3, 3] = -R @ center
        fx = base_f * (1 + 0.01 * jit[5])
        fy = fx * 1.005
        cx = width / 2 + 0.02 * width * rng.uniform(-1, 1)
        cy = height / 2 + 0.02 * height * rng.uniform(-1, 1)
        cams.append(Camera.from_intrinsics(fx, fy, cx, cy, width, height, w2c, id=i, name=f"{22070600 + i:08d}"))
    return cams


# ------------------------------------------------------------------------------------------ shading
_KEY = np.array([0.4, 0.8, 0.45]) / np.linalg.norm([0.4, 0.8, 0.45])
_FILL = np.array([-0.5, 0.2, -0.6]) / np.linalg.norm([-0.5, 0.2, -0.6])


def make_shader(app: Appearance):
    """A ``shade_fn`` for :func:`~avatarbench.data.synth.mesh_raster.render_mesh`.

    Expects ``vertex_attrs`` (V, 7) = [part id, s, cos, sin, rest x, rest y, rest z] (see
    :func:`vertex_attributes`).
    """
    from avatarbench.bodymodels.smplx_synthetic import PARTS

    C = {k: torch.tensor(getattr(app, k), dtype=torch.float32) for k in
         ("skin", "hair", "shirt", "shirt_alt", "skirt", "skirt_alt", "legs", "shoes", "iris", "lips")}
    key = torch.tensor(_KEY, dtype=torch.float32)
    fill = torch.tensor(_FILL, dtype=torch.float32)

    def shade(s) -> torch.Tensor:
        a = s.attrs
        part = a[:, 0].round().long()
        u, c, sn = a[:, 1], a[:, 2], a[:, 3]
        x, y, z = a[:, 4], a[:, 5], a[:, 6]
        N = a.shape[0]
        alb = C["skin"].expand(N, 3).clone()

        def put(mask, col):
            alb[mask] = col if col.dim() == 1 else col[mask]

        # shirt (torso + sleeves)
        if app.shirt_pattern == "stripes":
            alt = torch.sin(2 * math.pi * y / 0.06) > 0.55
        else:
            alt = (torch.sin(2 * math.pi * x / 0.07) * torch.sin(2 * math.pi * y / 0.07)) > 0
        shirt = torch.where(alt[:, None], C["shirt_alt"], C["shirt"])
        torso = part == PARTS["torso"]
        put(torso & (y < 0.47), shirt)
        put((part == PARTS["arm"]) & (u < 0.38), shirt)
        # legs, shoes (white soles)
        put(part == PARTS["leg"], C["legs"])
        foot = part == PARTS["foot"]
        put(foot, C["shoes"])
        put(foot & (y < -0.95), torch.tensor([0.95, 0.95, 0.95]))
        # skirt pattern on (theta, s)
        theta = torch.atan2(sn, c)
        if app.skirt_pattern == "dots":
            fu = torch.frac(theta / (2 * math.pi) * 16 + 8) - 0.5
            fv = torch.frac(u * 6) - 0.5
            alt = fu ** 2 + fv ** 2 < 0.09
        else:
            alt = (torch.frac(theta / (2 * math.pi) * 12 + 6) < 0.18) | (torch.frac(u * 5) < 0.18)
        put(part == PARTS["skirt"], torch.where(alt[:, None], C["skirt_alt"], C["skirt"]))
        put((part == PARTS["skirt"]) & (u > 0.95), C["skirt_alt"] * 0.6)  # hem band
        long_hair = part == 9  # the long_hair phenomenon's sheet (body_phenomena.HAIR_PART)
        if bool(long_hair.any()):
            alb[long_hair] = C["hair"] * (0.85 + 0.15 * torch.sin(60 * torch.atan2(sn, c)))[long_hair, None]
        # head: hair on top/back, lips, brows
        head = part == PARTS["head"]
        ly, lx, lz = 1 - 2 * u, c, sn
        strands = 0.85 + 0.15 * torch.sin(40 * torch.atan2(lz, lx))
        hair = head & ((ly + 0.55 * (-lz) > 0.28) | ((ly > 0.45) & (lz < 0.9)))
        alb[hair] = C["hair"] * strands[hair, None]
        put(head & (lx.abs() < 0.32) & (ly > -0.56) & (ly < -0.4) & (lz > 0.75), C["lips"])
        put(head & (lx.abs() > 0.2) & (lx.abs() < 0.62) & (ly > 0.2) & (ly < 0.29) & (lz > 0.7) & ~hair, C["hair"])
        # eyes: white, iris, pupil (front of the eyeball = +z in the rest pose)
        eye = part == PARTS["eye"]
        put(eye, torch.tensor([0.96, 0.96, 0.96]))
        put(eye & (sn > 0.72), C["iris"])
        put(eye & (sn > 0.92), torch.tensor([0.03, 0.03, 0.03]))
        # Lambert with two world lights; two-sided for the open skirt
        n = s.normals.clone()
        back = ~s.front_facing
        n[back] = -n[back]
        light = 0.32 + 0.6 * (n @ key).clamp(min=0) + 0.22 * (n @ fill).clamp(min=0)
        return (alb * light[:, None]).clamp(0, 1)

    return shade


def vertex_attributes(model_file: Path) -> torch.Tensor:
    """(V, 7) float32 [part, s, cos, sin, rest xyz] from the stand-in's extra keys."""
    with np.load(model_file, allow_pickle=False) as z:
        part = z["avatarbench_part"].astype(np.float32)
        attr = z["avatarbench_attr"].astype(np.float32)
        rest = z["v_template"].astype(np.float32)
    return torch.from_numpy(np.concatenate([part[:, None], attr, rest], 1))


# ------------------------------------------------------------------------------------------ garment
def skirt_dynamics(verts: np.ndarray, A: np.ndarray, model_file_arrays: dict, body_pose: np.ndarray,
                   velocity: np.ndarray) -> np.ndarray:
    """Non-LBS skirt deformation added to the LBS-posed skirt (the ground truth's garment).

    The hem flares outward with the spread of the thighs and lags the root motion.

    Args:
        verts: (V, 3) LBS-posed vertices; A: (55, 4, 4) joint transforms of that pose.
        body_pose: (63,) the frame's body pose; velocity: (3,) root velocity (m / frame).

    Returns:
        (V, 3) vertices with the skirt moved.
    """
    from avatarbench.bodymodels.smplx_synthetic import PARTS

    part, attr = model_file_arrays["avatarbench_part"], model_file_arrays["avatarbench_attr"]
    sk = part == PARTS["skirt"]
    h = attr[sk, 0].astype(np.float64)
    radial = np.stack([attr[sk, 1], np.zeros(sk.sum()), attr[sk, 2]], 1)
    R0 = A[0, :3, :3]
    radial_w = radial @ R0.T
    from scipy.spatial.transform import Rotation

    def leg_dir(j):  # thigh direction in the pelvis frame
        return Rotation.from_rotvec(body_pose[(j - 1) * 3:(j - 1) * 3 + 3]).apply([0.0, -1.0, 0.0])

    spread = float(np.arccos(np.clip(np.dot(leg_dir(1), leg_dir(2)), -1, 1)))
    flare = 0.03 + 0.12 * spread
    lag = -np.clip(velocity, -0.3, 0.3) * 0.25
    out = verts.copy()
    out[sk] = verts[sk] + (h ** 1.5)[:, None] * (flare * radial_w + lag[None])
    return out


# ------------------------------------------------------------------------------------------ writer
def _write_jpg(path: Path, arr: np.ndarray, quality: int) -> None:
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    a = (np.clip(arr, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    iio.imwrite(path, a, extension=".jpg", quality=quality, subsampling=0)


BACKDROP = np.array([0.42, 0.43, 0.46])  # grey behind the subject (where the mask is 0)


def _render_views(out: Path, f: int, verts: torch.Tensor, faces: torch.Tensor, attrs, cams, shade,
                  preset: BodyPreset) -> None:
    """Render frame ``f`` (verts (V, 3)) in every camera and write its image and mask JPEGs: the
    image holds the un-premultiplied foreground colour where alpha > 0, the backdrop elsewhere."""
    from avatarbench.data.synth.mesh_raster import render_mesh

    for cam in cams:
        rgb, alpha = render_mesh(verts, faces, cam, shade, preset.supersample, background=(0.0, 0.0, 0.0),
                                 vertex_attrs=attrs)
        a = alpha.numpy()
        fg = rgb.numpy() / np.maximum(a, 1e-6)
        img = np.where(a > 0, fg, BACKDROP)
        _write_jpg(out / cam.name / f"{f:08d}.jpg", img, preset.jpeg_quality)
        _write_jpg(out / cam.name / "mask" / "pha" / f"{f:08d}.jpg", a, preset.jpeg_quality)


def _write_calibration(out: Path, cams) -> None:
    """``calibration_full.json`` in the AvatarReX layout: per camera K, R, T (world to camera), imgSize."""
    calib = {}
    for cam in cams:
        w2c = cam.world_to_cam.numpy()
        calib[cam.name] = {"K": cam.K.numpy().round(10).tolist(), "R": w2c[:3, :3].round(12).tolist(),
                           "T": w2c[:3, 3].round(12).tolist(), "imgSize": [cam.width, cam.height]}
    (out / "calibration_full.json").write_text(json.dumps(calib, indent=1))


def _splits(n_tr: int, n_frames: int) -> dict:
    """Train cameras on the training frames; test cameras on them (novel view) and on the held-out motion."""
    train_cams = [i for i in range(NUM_CAMERAS) if i not in TEST_CAMERAS]
    return {
        "train": {"cameras": train_cams, "frame_range": [0, n_tr]},
        "novel_view": {"cameras": list(TEST_CAMERAS), "frame_range": [0, n_tr]},
        "self_reenact": {"cameras": list(TEST_CAMERAS), "frame_range": [n_tr, n_frames]},
    }


def generate_body_subject(out: Path, name: str, preset: BodyPreset, seed: int = 0, world=None) -> None:
    """Write one subject folder (see the module docstring). Called by :func:`ensure_synthetic_body`.

    ``world``: a :class:`~avatarbench.data.synth.world.World` of kind ``body`` (None = clean: exactly
    the pre-issue-12 bytes); its phenomena come from :mod:`avatarbench.data.synth.body_phenomena`.
    """
    if world is not None and not world.is_clean:
        return _generate_body_world(out, name, preset, seed, world)
    from avatarbench.bodymodels.smplx import load_smplx
    from avatarbench.bodymodels.smplx_synthetic import VERSION as MODEL_VERSION, ensure_synthetic_smplx
    from avatarbench.data.smpl_params import save_smplx_params

    sd = SUBJECTS[name]
    model_file = ensure_synthetic_smplx()
    model = load_smplx(model_file, dtype=torch.float64)
    with np.load(model_file, allow_pickle=False) as z:
        extra = {k: z[k] for k in ("avatarbench_part", "avatarbench_attr")}
    attrs = vertex_attributes(model_file)
    faces = model.faces
    shade = make_shader(sd.appearance)
    cams = ring_cameras(preset.width, preset.height, seed)
    n_tr, n_nv = preset.n_train, preset.n_novel
    F = n_tr + n_nv
    motion = make_motion(sd, n_tr, n_nv, seed)
    betas = np.asarray(sd.betas, np.float64)

    def forward(f: int, transl: np.ndarray):
        keys = ("global_orient", "body_pose", "jaw_pose", "expression", "left_hand_pose", "right_hand_pose")
        d = {k: torch.from_numpy(motion[k][f])[None] for k in keys}
        return model(betas=torch.from_numpy(betas)[None], transl=torch.from_numpy(transl)[None], **d)

    # ground contact: lift each frame so that its lowest vertex touches y = 0
    for f in range(F):
        o = forward(f, motion["transl"][f])
        motion["transl"][f, 1] -= float(o.verts[0, :, 1].min())
    save_smplx_params(out / "smpl_params.npz", betas, motion)
    params = np.load(out / "smpl_params.npz", allow_pickle=False)  # what loaders see (float32)

    (out / "gt_mesh").mkdir(parents=True, exist_ok=True)
    np.save(out / "gt_mesh" / "faces.npy", faces.numpy().astype(np.int32))
    for f in range(F):
        o = forward(f, params["transl"][f].astype(np.float64))
        prev = max(f - 1, 0) if f < n_tr else max(f - 1, n_tr)
        vel = params["transl"][f] - params["transl"][prev]
        verts = skirt_dynamics(o.verts[0].numpy(), o.A[0].numpy(), extra, params["body_pose"][f].astype(np.float64),
                               vel.astype(np.float64))
        np.save(out / "gt_mesh" / f"{f:08d}.npy", verts.astype(np.float32))
        _render_views(out, f, torch.from_numpy(verts), faces, attrs, cams, shade, preset)
    _write_calibration(out, cams)
    info = {
        "name": name, "synthetic": True, "generator": f"avatarbench.data.synth.body {VERSION}",
        "preset": {k: getattr(preset, k) for k in preset.__dataclass_fields__}, "seed": seed,
        "body_model": "smplx_synthetic", "body_model_version": MODEL_VERSION, "body_model_path": str(model_file),
        "gt_mesh": "gt_mesh", "image_ext": "jpg", "mask_ext": "jpg",
        "train_motion": sd.train_motion, "novel_motion": sd.novel_motion,
        "notes": "images hold the foreground colour where the mask is > 0 (composite with the mask); "
                 "the skirt of gt_mesh moves beyond LBS (flare + lag)",
        "splits": _splits(n_tr, F),
    }
    (out / "avatarbench_subject.json").write_text(json.dumps(info, indent=1))


def _generate_body_world(out: Path, name: str, preset: BodyPreset, seed: int, world) -> None:
    """:func:`generate_body_subject` with phenomena. Writes the fitter's parameters to
    ``smpl_params.npz`` (the truth when ``tracking_noise`` is off) and the truth to
    ``true_params/smpl_params.npz`` (read by no loader)."""
    import time

    from avatarbench.bodymodels.smplx import load_smplx
    from avatarbench.bodymodels.smplx_synthetic import PARTS, VERSION as MODEL_VERSION, ensure_synthetic_smplx
    from avatarbench.data.smpl_params import save_smplx_params
    from avatarbench.data.synth import body_phenomena as bp
    from avatarbench.data.synth.head_phenomena import mesh_difference
    from avatarbench.data.synth.mesh_raster import vertex_normals
    from avatarbench.data.synth.world import dataset_card

    t_start = time.perf_counter()
    sd = SUBJECTS[name]
    model_file = ensure_synthetic_smplx()
    model = load_smplx(model_file, dtype=torch.float64)
    with np.load(model_file, allow_pickle=False) as z:
        extra = {k: z[k] for k in ("avatarbench_part", "avatarbench_attr")}
    part = extra["avatarbench_part"]
    attrs = vertex_attributes(model_file)
    faces = model.faces
    shade = make_shader(sd.appearance)
    cams = ring_cameras(preset.width, preset.height, seed)
    n_tr, n_nv = preset.n_train, preset.n_novel
    F = n_tr + n_nv
    segments = [(0, n_tr), (n_tr, F)]
    motion = make_motion(sd, n_tr, n_nv, seed)
    betas = np.asarray(sd.betas, np.float64)
    keys = ("global_orient", "body_pose", "jaw_pose", "expression", "left_hand_pose", "right_hand_pose")

    def forward(f: int, transl: np.ndarray, src=None, b=None):
        src = motion if src is None else src
        d = {k: torch.from_numpy(np.asarray(src[k][f], np.float64))[None] for k in keys}
        bb = betas if b is None else b
        return model(betas=torch.from_numpy(bb)[None], transl=torch.from_numpy(transl)[None], **d)

    for f in range(F):  # ground contact, as the clean world
        o = forward(f, motion["transl"][f])
        motion["transl"][f, 1] -= float(o.verts[0, :, 1].min())
    (out / "true_params").mkdir(parents=True, exist_ok=True)
    save_smplx_params(out / "true_params" / "smpl_params.npz", betas, motion)
    params = dict(np.load(out / "true_params" / "smpl_params.npz", allow_pickle=False))  # the truth as float32, as loaders see it
    record: dict = {"world": world.tag}
    if world.has("tracking_noise"):
        rng = np.random.default_rng([sd.seed, seed, 31337])
        truth = {k: params[k].astype(np.float64) for k in keys + ("transl",)}
        tracked, betas_t = bp.track_smplx_params(truth, betas, segments, rng)
        save_smplx_params(out / "smpl_params.npz", betas_t, tracked)
        tp = dict(np.load(out / "smpl_params.npz", allow_pickle=False))
        vt = torch.stack([forward(f, tp["transl"][f].astype(np.float64), tp, tp["betas"].astype(np.float64).reshape(-1))
                          .verts[0] for f in range(F)])
        vg = torch.stack([forward(f, params["transl"][f].astype(np.float64), params).verts[0] for f in range(F)])
        record["tracking_error"] = mesh_difference(vt, vg, cams)
    else:
        save_smplx_params(out / "smpl_params.npz", betas, motion)

    rest = forward(0, np.zeros(3), {k: np.zeros_like(params[k]) for k in keys})
    rest_v, rest_j = rest.verts[0].numpy(), rest.joints[0].numpy()
    yaw = np.array([float(np.arctan2(*_rot_y_of(params["global_orient"][f]))) for f in range(F)])
    # the novel poses are separate held poses (no motion between them): each is its own segment at rest
    dyn_segments = [(0, n_tr)] + [(f, f + 1) for f in range(n_tr, F)]
    garment = bp.simulate_garment(params["transl"].astype(np.float64), yaw, dyn_segments) \
        if world.has("garment_dynamics") else None
    hair = bp.LongHair(rest_v[part == PARTS["head"]]) if world.has("long_hair") else None
    all_faces = faces
    all_attrs = attrs
    if hair is not None:
        all_faces = torch.cat([faces, torch.from_numpy(hair.faces) + rest_v.shape[0]])
        all_attrs = torch.cat([attrs, torch.from_numpy(hair.attrs)])

    (out / "gt_mesh").mkdir(parents=True, exist_ok=True)
    np.save(out / "gt_mesh" / "faces.npy", all_faces.numpy().astype(np.int32))
    for f in range(F):
        o = forward(f, params["transl"][f].astype(np.float64), params)
        A = o.A[0].numpy()
        bpose = params["body_pose"][f].astype(np.float64)
        if garment is not None:
            verts = bp.dynamic_skirt(o.verts[0].numpy(), A, part, extra["avatarbench_attr"], bpose,
                                     garment["hem"][f], float(garment["twist"][f]), float(garment["yaw_rate"][f]))
            vn = vertex_normals(torch.from_numpy(verts), faces).double().numpy()
            verts = bp.joint_folds(verts, vn, rest_v, rest_j, part, bpose)
        else:
            prev = max(f - 1, 0) if f < n_tr else max(f - 1, n_tr)
            vel = params["transl"][f] - params["transl"][prev]
            verts = skirt_dynamics(o.verts[0].numpy(), A, extra, bpose, vel.astype(np.float64))
        if hair is not None:
            if f >= n_tr:  # each novel pose is held: the hair hangs at rest
                hair.reset()
            verts = np.concatenate([verts, hair.step(A[bp.HEAD_JOINT])])
        np.save(out / "gt_mesh" / f"{f:08d}.npy", verts.astype(np.float32))
        _render_views(out, f, torch.from_numpy(verts), all_faces, all_attrs, cams, shade, preset)
    _write_calibration(out, cams)
    (out / "generation_time.json").write_text(
        json.dumps({"generation_seconds": round(time.perf_counter() - t_start, 3)}) + "\n")
    wmeta = world.metadata() | {"measured": record}
    info = {
        "name": f"{name}_{world.tag}", "synthetic": True, "generator": f"avatarbench.data.synth.body {VERSION}",
        "preset": {k: getattr(preset, k) for k in preset.__dataclass_fields__}, "seed": seed,
        "body_model": "smplx_synthetic", "body_model_version": MODEL_VERSION, "body_model_path": str(model_file),
        "gt_mesh": "gt_mesh", "image_ext": "jpg", "mask_ext": "jpg",
        "train_motion": sd.train_motion, "novel_motion": sd.novel_motion,
        "notes": "images hold the foreground colour where the mask is > 0 (composite with the mask); "
                 "smpl_params.npz holds the fitter's parameters, true_params/ the truth (analysis only)",
        "world": wmeta,
        "splits": _splits(n_tr, F),
    }
    (out / "avatarbench_subject.json").write_text(json.dumps(info, indent=1))
    meas = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in record.items() if k != "world"}
    (out / "DATASET_CARD.md").write_text(dataset_card("body", world, [info["name"]], {info["name"]: meas}))


def _rot_y_of(rotvec: np.ndarray) -> tuple[float, float]:
    """(sin, cos)-like pair whose atan2 is the heading (rotation of +z about +y) of a global orientation."""
    from scipy.spatial.transform import Rotation

    z = Rotation.from_rotvec(np.asarray(rotvec, np.float64)).apply([0.0, 0.0, 1.0])
    return float(z[0]), float(z[2])


def synthetic_body_root(name: str, preset: str = "smoke", seed: int = 0, world=None) -> Path:
    """Where :func:`ensure_synthetic_body` caches a subject (``<name>`` for the clean world,
    ``<name>_<world tag>`` otherwise)."""
    from avatarbench.paths import cache_dir

    tag = preset if seed == 0 else f"{preset}-seed{seed}"
    folder = name if world is None or world.is_clean else f"{name}_{world.tag}"
    return cache_dir() / "synthetic" / "body" / VERSION / tag / folder


def ensure_synthetic_body(name: str = "synth_body_a", preset: str = "smoke", seed: int = 0, world=None) -> Path:
    """The folder of a synthetic body subject, generated on first use (atomic rename).

    Args:
        name: ``synth_body_a`` (alias ``synth_body``) or ``synth_body_b``, optionally with a world
            suffix (``synth_body_a_full``, ``synth_body_a_clean``, ``synth_body_a_long_hair``; see
            :mod:`avatarbench.data.synth.world`); a bare name = ``world.DEFAULT_WORLD``.
        preset: ``smoke`` (128 x 128, 20 + 8 frames) or ``standard`` (384 x 384, 60 + 20 frames).
        seed: motion phase / camera jitter variant (0 = the shipped subjects).
        world: overrides the name's world (a World or a tag).

    Returns:
        The subject folder (load it with :func:`avatarbench.data.avatarrex.load_avatarrex`).
    """
    from avatarbench.data.synth.world import World, split_world
    from avatarbench.errors import ConfigError

    parsed = split_world(name, tuple(ALIASES) + SUBJECT_NAMES, "body")
    if parsed is not None:
        name, w = parsed
        world = w if world is None else world
    world = World.parse("body", None) if world is None else world
    world = world if isinstance(world, World) else World.parse("body", world)
    name = ALIASES.get(name, name)
    if name not in SUBJECTS:
        raise ConfigError(f"unknown synthetic body subject {name!r} (known: {', '.join(SUBJECTS)}, synth_body)")
    if preset not in PRESETS:
        raise ConfigError(f"unknown synthetic body preset {preset!r} (known: {', '.join(PRESETS)})")
    root = synthetic_body_root(name, preset, seed, world)
    if (root / "avatarbench_subject.json").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".tmp-{root.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # small tensors: extra threads only contend (and vary timings)
        with torch.no_grad():
            from avatarbench.data.synth.progress import generation_progress

            n_f = PRESETS[preset].n_train + PRESETS[preset].n_novel
            with generation_progress(tmp, "*/*.jpg", NUM_CAMERAS * n_f,
                                     f"synthetic body subject {name} ({NUM_CAMERAS} cameras x {n_f} frames)", root):
                generate_body_subject(tmp, name, PRESETS[preset], seed, world)
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / "avatarbench_subject.json").exists():
                raise
    finally:
        torch.set_num_threads(threads)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
