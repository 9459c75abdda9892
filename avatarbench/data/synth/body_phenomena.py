"""The body phenomena of the synthetic world (see :mod:`avatarbench.data.synth.world` for what each
stands for, its magnitude and source).

- :func:`track_smplx_params`: the fitter's view of the true SMPL-X parameters (``tracking_noise``);
- :class:`Pendulum`, :func:`simulate_garment`, :func:`dynamic_skirt`, :func:`joint_folds`: the skirt
  as a damped pendulum driven by the motion history, and folds at elbows and knees
  (``garment_dynamics``);
- :class:`LongHair`: a hanging sheet of hair swinging with the head (``long_hair``).

Sequence time: frames are 0.1 s apart (:data:`FRAME_DT`); the training frames form one continuous
motion, the novel-pose frames another (the dynamic state restarts at rest for each segment).
"""

from __future__ import annotations

import math

import numpy as np

FRAME_DT = 0.1
GRAVITY = 9.81

# ----------------------------------------------------------------------------- tracking noise
#: key -> (jitter sigma, bias amplitude) in rad / m / coefficient
BODY_TRACKING_NOISE = {
    "global_orient": (math.radians(0.5), math.radians(1.0)),
    "transl": (0.005, 0.010),
    "body_pose": (math.radians(1.5), math.radians(2.0)),
    "left_hand_pose": (math.radians(4.0), math.radians(5.0)),
    "right_hand_pose": (math.radians(4.0), math.radians(5.0)),
    "jaw_pose": (math.radians(1.0), math.radians(1.0)),
    "expression": (0.1, 0.0),
}
BETAS_SIGMA = 0.2


def track_smplx_params(params: dict[str, np.ndarray], betas: np.ndarray, segments: list[tuple[int, int]],
                       rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """What a multi-view SMPL-X fitter delivers: truth + smooth bias + per-frame jitter, and a betas error.

    Args:
        params: key -> (F, D) true parameters (the ``smpl_params.npz`` keys except betas).
        betas: (B,) true betas.
        segments: [(start, stop)) frame ranges of continuous motion (the bias is smooth within each).
        rng: the subject's generator.
    Returns:
        tracked params (same keys/shapes, float64) and tracked betas (B,).
    """
    out = {k: np.asarray(v, np.float64).copy() for k, v in params.items()}
    for key, (jit, bias) in BODY_TRACKING_NOISE.items():
        if key not in out:
            continue
        x = out[key]
        D = x.shape[1]
        for a, b in segments:
            T = b - a
            u = np.linspace(0.0, 1.0, T) if T > 1 else np.zeros(1)
            const = rng.normal(size=D) * bias / math.sqrt(2)
            f, ph = rng.uniform(0.3, 1.0, size=D), rng.uniform(0, 2 * math.pi, size=D)
            smooth = const[None] + bias / math.sqrt(2) * np.sin(2 * math.pi * f[None] * u[:, None] + ph[None])
            x[a:b] += smooth + rng.normal(size=(T, D)) * jit
    b = np.asarray(betas, np.float64).copy()
    b += rng.normal(size=b.shape) * BETAS_SIGMA
    return out, b


# ----------------------------------------------------------------------------- pendulum
class Pendulum:
    """A 2-D damped pendulum (horizontal displacement of a hanging mass relative to its pivot).

    ``x'' = -omega^2 x - 2 zeta omega x'``; a change ``dv`` of the pivot's velocity gives the mass a
    relative velocity ``-dv`` (inertia). Integrated with 20 semi-implicit Euler substeps per frame.

    Args:
        length: pendulum length (m) -> omega = sqrt(g / L); zeta: damping ratio; limit: |x| clamp.
    """

    def __init__(self, length: float, zeta: float, limit: float, dims: int = 3):
        self.omega = math.sqrt(GRAVITY / length)
        self.zeta = zeta
        self.limit = limit
        self.x = np.zeros(dims)
        self.v = np.zeros(dims)

    def step(self, dv: np.ndarray, dt: float = FRAME_DT, substeps: int = 20) -> np.ndarray:
        self.v = self.v - np.asarray(dv, np.float64)
        h = dt / substeps
        for _ in range(substeps):
            a = -self.omega ** 2 * self.x - 2 * self.zeta * self.omega * self.v
            self.v = self.v + h * a
            self.x = self.x + h * self.v
        n = np.linalg.norm(self.x)
        if n > self.limit:
            self.x *= self.limit / n
        return self.x.copy()


SKIRT_LENGTH, SKIRT_ZETA, SKIRT_LIMIT = 0.5, 0.2, 0.25
HEM_RADIUS = 0.3  # nominal hem radius (m) for the centrifugal flare


def simulate_garment(transl: np.ndarray, yaw: np.ndarray, segments: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """The skirt's dynamic state for every frame from the root trajectory.

    Args:
        transl: (F, 3) root positions (m); yaw: (F,) heading about +y (rad, unwrapped per segment).
        segments: continuous frame ranges (the state restarts at rest at each segment start).
    Returns:
        ``hem`` (F, 3) horizontal hem lag/swing (m), ``twist`` (F,) twist lag (rad), ``yaw_rate`` (F,) rad/s.
    """
    F = transl.shape[0]
    hem, twist, rate = np.zeros((F, 3)), np.zeros(F), np.zeros(F)
    for a, b in segments:
        pend = Pendulum(SKIRT_LENGTH, SKIRT_ZETA, SKIRT_LIMIT)
        tw = Pendulum(SKIRT_LENGTH, SKIRT_ZETA, 0.8, dims=1)
        v_prev, w_prev = np.zeros(3), 0.0
        yw = np.unwrap(yaw[a:b])
        for i, f in enumerate(range(a, b)):
            v = (transl[f] - transl[f - 1]) / FRAME_DT if i > 0 else np.zeros(3)
            v[1] = 0.0
            w = (yw[i] - yw[i - 1]) / FRAME_DT if i > 0 else 0.0
            hem[f] = pend.step(v - v_prev)
            twist[f] = tw.step(np.array([w - w_prev]))[0]
            rate[f] = w
            v_prev, w_prev = v, w
    return {"hem": hem, "twist": twist, "yaw_rate": rate}


def dynamic_skirt(verts: np.ndarray, A: np.ndarray, part: np.ndarray, attr: np.ndarray, body_pose: np.ndarray,
                  hem: np.ndarray, twist: float, yaw_rate: float) -> np.ndarray:
    """Skirt = LBS + pose flare (leg spread, as the clean world) + centrifugal flare + pendulum lag/swing +
    twist lag about the pelvis' vertical axis, all growing with the height along the skirt as h^1.5.

    Args:
        verts: (V, 3) LBS-posed vertices; A: (55, 4, 4) joint transforms; part, attr: the stand-in's
            per-vertex part ids (V,) and attributes (V, 3); body_pose: (63,);
        hem: (3,) pendulum displacement; twist: rad; yaw_rate: rad/s.
    Returns:
        (V, 3) vertices.
    """
    from scipy.spatial.transform import Rotation

    from avatarbench.bodymodels.smplx_synthetic import PARTS

    sk = part == PARTS["skirt"]
    h = attr[sk, 0].astype(np.float64)
    radial = np.stack([attr[sk, 1], np.zeros(sk.sum()), attr[sk, 2]], 1)
    radial_w = radial @ A[0, :3, :3].T

    def leg_dir(j):
        return Rotation.from_rotvec(body_pose[(j - 1) * 3:(j - 1) * 3 + 3]).apply([0.0, -1.0, 0.0])

    spread = float(np.arccos(np.clip(np.dot(leg_dir(1), leg_dir(2)), -1, 1)))
    # conical pendulum: a hem spinning at yaw rate w stands out at angle atan(w^2 r / g)
    spin = SKIRT_LENGTH * math.sin(math.atan(yaw_rate ** 2 * HEM_RADIUS / GRAVITY))
    flare = 0.03 + 0.12 * spread + spin
    w = h ** 1.5
    out = verts.copy()
    p = verts[sk] + w[:, None] * (flare * radial_w + hem[None])
    # twist lag: rotate about the vertical axis through the pelvis joint (world)
    piv = A[0, :3, 3] + A[0, :3, :3] @ np.zeros(3)
    ang = twist * w
    c, s = np.cos(ang), np.sin(ang)
    dx, dz = p[:, 0] - piv[0], p[:, 2] - piv[2]
    p[:, 0] = piv[0] + c * dx + s * dz
    p[:, 2] = piv[2] - s * dx + c * dz
    out[sk] = p
    return out


FOLD_WAVELENGTH, FOLD_AMPLITUDE, FOLD_EXTENT = 0.025, 0.004, 0.06
#: joint -> (SMPL-X joint index, part name)
FOLD_JOINTS = {"left_elbow": (18, "arm"), "right_elbow": (19, "arm"), "left_knee": (4, "leg"),
               "right_knee": (5, "leg")}


def joint_folds(verts: np.ndarray, normals: np.ndarray, rest: np.ndarray, rest_joints: np.ndarray,
                part: np.ndarray, body_pose: np.ndarray) -> np.ndarray:
    """Ring folds of the sleeves/trousers around bent elbows and knees.

    Displacement along the vertex normal: ``FOLD_AMPLITUDE * min(bend / 90 deg, 1.5) *
    cos(2 pi d / FOLD_WAVELENGTH) * exp(-d^2 / (2 (FOLD_EXTENT/2)^2))`` with d the rest distance to the joint.

    Args:
        verts, normals: (V, 3) posed; rest: (V, 3) rest vertices; rest_joints: (55, 3);
        part: (V,) part ids; body_pose: (63,).
    """
    from avatarbench.bodymodels.smplx_synthetic import PARTS

    out = verts.copy()
    for _, (j, pname) in FOLD_JOINTS.items():
        bend = float(np.linalg.norm(body_pose[(j - 1) * 3:(j - 1) * 3 + 3]))
        if bend < 1e-6:
            continue
        m = part == PARTS[pname]
        d = np.linalg.norm(rest[m] - rest_joints[j], axis=1)
        amp = FOLD_AMPLITUDE * min(bend / (math.pi / 2), 1.5)
        disp = amp * np.cos(2 * math.pi * d / FOLD_WAVELENGTH) * np.exp(-0.5 * (d / (FOLD_EXTENT / 2)) ** 2)
        out[m] += disp[:, None] * normals[m]
    return out


# ----------------------------------------------------------------------------- long hair
HAIR_LENGTH, HAIR_ZETA, HAIR_SWING_LIMIT = 0.30, 0.15, 0.9
HAIR_PART = 9  # part id of the hair vertices in the renderer's vertex attributes
HEAD_JOINT = 15


class LongHair:
    """A sheet of hair rooted around the back of the head (head joint), hanging with gravity and swinging.

    Args:
        head_rest: (N, 3) rest vertices of the stand-in's head part (centre and radius).
        n_around, n_along: sheet resolution.
    Attributes:
        faces: (G, 3) local faces; attrs: (H, 7) renderer attributes [part, s, cos, sin, rest xyz].
    """

    def __init__(self, head_rest: np.ndarray, n_around: int = 15, n_along: int = 9):
        c = head_rest.mean(0)
        r_xz = float(np.median(np.linalg.norm((head_rest - c)[:, [0, 2]], axis=1)))
        self.center = c
        phis = np.linspace(math.radians(80), math.radians(280), n_around)  # 0 = front (+z)
        self.roots = np.stack([c[0] + (r_xz + 0.015) * np.sin(phis), np.full(n_around, c[1] + 0.02),
                               c[2] + (r_xz + 0.015) * np.cos(phis)], 1)
        self.radial = np.stack([np.sin(phis), np.zeros(n_around), np.cos(phis)], 1)
        self.s = np.linspace(0.0, 1.0, n_along)
        self.n_around, self.n_along = n_around, n_along
        f = []
        for i in range(n_along - 1):
            for k in range(n_around - 1):
                a0, a1 = i * n_around + k, i * n_around + k + 1
                b0, b1 = a0 + n_around, a1 + n_around
                f += [[a0, b0, a1], [a1, b0, b1]]
        self.faces = np.asarray(f, np.int64)
        rest = (self.roots[None] + self.s[:, None, None] * HAIR_LENGTH * np.array([0.0, -1.0, 0.0])).reshape(-1, 3)
        S = np.repeat(self.s, n_around)
        self.attrs = np.concatenate([np.full((len(rest), 1), HAIR_PART), S[:, None],
                                     np.tile(np.cos(phis), n_along)[:, None], np.tile(np.sin(phis), n_along)[:, None],
                                     rest], 1).astype(np.float32)
        self.pend = Pendulum(HAIR_LENGTH, HAIR_ZETA, HAIR_SWING_LIMIT * HAIR_LENGTH)
        self.v_prev = None
        self.p_prev = None

    def reset(self) -> None:
        self.pend = Pendulum(HAIR_LENGTH, HAIR_ZETA, HAIR_SWING_LIMIT * HAIR_LENGTH)
        self.v_prev = self.p_prev = None

    def step(self, A_head: np.ndarray) -> np.ndarray:
        """(H, 3) posed hair of the next frame (call in frame order; :meth:`reset` between segments)."""
        R, t = A_head[:3, :3], A_head[:3, 3]
        roots = self.roots @ R.T + t
        radial = self.radial @ R.T
        p = self.center @ R.T + t
        v = (p - self.p_prev) / FRAME_DT if self.p_prev is not None else np.zeros(3)
        v[1] = 0.0
        dv = v - self.v_prev if self.v_prev is not None else np.zeros(3)
        swing = self.pend.step(dv)  # tip displacement (m) of the pendulum of length HAIR_LENGTH
        self.p_prev, self.v_prev = p, v
        d = np.array([0.0, -1.0, 0.0]) * HAIR_LENGTH + swing
        d[1] = -math.sqrt(max(HAIR_LENGTH ** 2 - swing[0] ** 2 - swing[2] ** 2, 1e-6))
        s = self.s[:, None, None]
        # hang: down along the swinging direction, the lower part curving slightly away from the body
        pts = roots[None] + s * d[None, None] + (0.04 * s ** 2) * radial[None]
        return pts.reshape(-1, 3)


__all__ = ["FRAME_DT", "BODY_TRACKING_NOISE", "track_smplx_params", "Pendulum", "simulate_garment",
           "dynamic_skirt", "joint_folds", "LongHair", "HAIR_PART"]
