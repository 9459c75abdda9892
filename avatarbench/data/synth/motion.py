"""Driving sequences (FLAME parameters) of the synthetic head subjects.

Each sequence is a smooth curve over normalised time ``u in [0, 1]`` sampled at ``T`` timesteps,
so a preset with more timesteps shows the same performance more densely (events such as blinks
are wide enough, ~20 % of the sequence, to be caught with 10 timesteps). All sequences contain
head motion (global rotation, neck rotation, translation) and gaze; the facial performance
differs per sequence, named after NeRSemble's protocol sequences:

- ``EMO-1``  happy: smiles of growing intensity, cheek raise, a blink
- ``EMO-2``  surprise: brow raise + jaw drop + wide eyes, then relax
- ``EXP-2``  mouth: jaw open/close cycles, lip pucker and stretch
- ``EXP-3``  upper face: brow raise / frown alternation, blinks, gaze sweeps
- ``FREE``   held-out free performance mixing all of the above with other amplitudes,
  timings and combinations (self-reenactment); identity B's ``FREE`` uses another seed
  (cross-identity reenactment driver)

Expression "units" (smile, brow raise, ...) are directions in FLAME's expression space. Real
FLAME expression components are PCA modes without names; the synthetic stand-in model may name
its components (``ExpressionUnits.from_model``); otherwise unit ``k`` drives coefficient ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TRAIN_SEQUENCES: tuple[str, ...] = ("EMO-1", "EMO-2", "EXP-2", "EXP-3")
FREE_SEQUENCE = "FREE"
UNIT_NAMES: tuple[str, ...] = ("smile", "brow_raise", "blink", "frown", "pucker", "mouth_stretch",
                               "cheek_raise", "eye_wide")
FLAME_KEYS = ("translation", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "expr")


@dataclass
class ExpressionUnits:
    """Named directions in expression space: ``vectors[name]`` is (n_expr,) float32."""

    vectors: dict[str, np.ndarray]
    n_expr: int = 100

    @classmethod
    def default(cls, n_expr: int = 100) -> "ExpressionUnits":
        vecs = {}
        for k, name in enumerate(UNIT_NAMES):
            v = np.zeros(n_expr, dtype=np.float32)
            v[k] = 1.0
            vecs[name] = v
        return cls(vecs, n_expr)

    @classmethod
    def stand_in(cls, n_expr: int = 100) -> "ExpressionUnits":
        """Units for avatarbench's synthetic FLAME stand-in, whose expression dims 0-3 are jaw open,
        smile, brow raise and blink (1 = closed); dims 4+ are small smooth local fields."""
        comb = {
            "smile": {1: 0.6},
            "brow_raise": {2: 0.6},
            "blink": {3: 0.5},
            "frown": {2: -0.6, 5: 0.5},
            "pucker": {1: -0.5, 4: 0.6},
            "mouth_stretch": {0: 0.3, 1: -0.4},
            "cheek_raise": {1: 0.35, 6: 0.6},
            "eye_wide": {3: -0.15},
        }
        vecs = {}
        for name in UNIT_NAMES:
            v = np.zeros(n_expr, dtype=np.float32)
            for k, w in comb[name].items():
                if k < n_expr:
                    v[k] = w
            vecs[name] = v
        return cls(vecs, n_expr)

    @classmethod
    def from_model(cls, model, n_expr: int = 100) -> "ExpressionUnits":
        """Use the model's named expression components when it has them.

        The synthetic stand-in (``model.is_synthetic``) gets :meth:`stand_in`; otherwise looks for
        ``model.expression_units`` (dict name -> (n_expr,) vector) or ``model.expression_names``
        (list, component k = name); falls back to :meth:`default`.
        """
        if getattr(model, "is_synthetic", False):
            return cls.stand_in(n_expr)
        units = cls.default(n_expr)
        named = getattr(model, "expression_units", None)
        if isinstance(named, dict):
            for name, vec in named.items():
                if name in units.vectors:
                    v = np.zeros(n_expr, dtype=np.float32)
                    a = np.asarray(vec, dtype=np.float32).reshape(-1)[:n_expr]
                    v[: a.shape[0]] = a
                    units.vectors[name] = v
        names = getattr(model, "expression_names", None)
        if isinstance(names, (list, tuple)):
            for k, name in enumerate(names):
                if name in units.vectors and k < n_expr:
                    v = np.zeros(n_expr, dtype=np.float32)
                    v[k] = 1.0
                    units.vectors[name] = v
        return units


@dataclass
class MotionSequence:
    """One sequence of FLAME driving parameters (VHAP npz shapes without the batch dim).

    Attributes:
        name: sequence name, e.g. ``EMO-1``.
        params: ``translation (T,3) rotation (T,3) neck_pose (T,3) jaw_pose (T,3)
            eyes_pose (T,6) expr (T,n_expr)`` float32 (translation in the capture world, before
            VHAP's relocation).
    """

    name: str
    params: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_timesteps(self) -> int:
        return int(self.params["expr"].shape[0])


def _bump(u: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Smooth raised-cosine pulse in [0, 1] of full width ``width`` centred at ``centre``."""
    x = np.clip((u - centre) / (width / 2), -1, 1)
    return 0.5 * (1 + np.cos(np.pi * x))


def _wave(u: np.ndarray, rng: np.random.Generator, amp: float, cycles=(0.5, 1.5)) -> np.ndarray:
    """A smooth random wiggle (two sinusoids) with amplitude ~``amp``."""
    out = np.zeros_like(u)
    for _ in range(2):
        f = rng.uniform(*cycles)
        out += amp / 2 * np.sin(2 * np.pi * f * u + rng.uniform(0, 2 * np.pi))
    return out


def _performance(name: str, u: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Unit activations (T,) per unit name, jaw opening (T,) and gaze (T, 2) for a sequence."""
    z = np.zeros_like(u)
    a = {n: z.copy() for n in UNIT_NAMES}
    jaw = z.copy()
    gaze = np.stack([_wave(u, rng, 0.08), _wave(u, rng, 0.12)], 1)  # pitch, yaw (rad)
    if name == "EMO-1":
        a["smile"] = 1.2 * _bump(u, 0.3, 0.45) + 2.0 * _bump(u, 0.72, 0.45)
        a["cheek_raise"] = 0.8 * a["smile"]
        a["blink"] = 2.0 * _bump(u, 0.52, 0.22)
        jaw = 0.08 * _bump(u, 0.72, 0.45)
    elif name == "EMO-2":
        s = _bump(u, 0.45, 0.7)
        a["brow_raise"] = 2.2 * s
        a["eye_wide"] = 1.5 * s
        jaw = 0.30 * _bump(u, 0.48, 0.55)
        a["mouth_stretch"] = 0.6 * s
    elif name == "EXP-2":
        jaw = 0.28 * (0.5 - 0.5 * np.cos(2 * np.pi * 2.0 * u))
        a["pucker"] = 1.8 * _bump(u, 0.25, 0.3)
        a["mouth_stretch"] = 1.5 * _bump(u, 0.75, 0.3)
    elif name == "EXP-3":
        a["brow_raise"] = 2.0 * _bump(u, 0.2, 0.3) + 1.5 * _bump(u, 0.8, 0.25)
        a["frown"] = 1.8 * _bump(u, 0.5, 0.3)
        a["blink"] = 2.0 * (_bump(u, 0.3, 0.22) + _bump(u, 0.7, 0.22))
        gaze = np.stack([0.12 * np.sin(2 * np.pi * u), 0.25 * np.sin(2 * np.pi * 1.5 * u)], 1)
    elif name == FREE_SEQUENCE:
        # everything, with amplitudes/timings drawn from the sequence's own generator
        for n in UNIT_NAMES:
            c = rng.uniform(0.15, 0.85)
            a[n] = rng.uniform(0.8, 2.0) * _bump(u, c, rng.uniform(0.2, 0.5))
        a["blink"] = 2.0 * _bump(u, rng.uniform(0.15, 0.85), 0.22)
        jaw = rng.uniform(0.15, 0.32) * _bump(u, rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.6))
        gaze = np.stack([_wave(u, rng, 0.15), _wave(u, rng, 0.3)], 1)
    else:
        raise ValueError(f"unknown synthetic sequence {name!r}")
    return {"units": a, "jaw": jaw, "gaze": gaze}


def make_sequence(name: str, num_timesteps: int, seed: int, units: ExpressionUnits,
                  head_position=(0.0, 0.0, 0.0)) -> MotionSequence:
    """The FLAME parameters of one sequence.

    Args:
        name: one of :data:`TRAIN_SEQUENCES` or ``FREE``.
        num_timesteps: T.
        seed: motion seed (the identity's seed; the sequence name is mixed in).
        units: expression directions.
        head_position: (3,) mean head translation in the capture world (before relocation).
    """
    T = int(num_timesteps)
    u = np.linspace(0.0, 1.0, T) if T > 1 else np.zeros(1)
    rng = np.random.default_rng([seed, sum(ord(c) * 31 ** i for i, c in enumerate(name)) % (2 ** 31)])
    perf = _performance(name, u, rng)
    expr = np.zeros((T, units.n_expr), dtype=np.float64)
    for n, act in perf["units"].items():
        expr += act[:, None] * units.vectors[n][None].astype(np.float64)
    # small idiosyncratic activity in the other low-order components
    for k in range(len(UNIT_NAMES), min(units.n_expr, 20)):
        expr[:, k] += _wave(u, rng, 0.25 / (1 + 0.2 * k))

    jaw = np.zeros((T, 3))
    jaw[:, 0] = np.clip(perf["jaw"], 0.0, None)
    jaw[:, 1] = _wave(u, rng, 0.02)  # slight sideways jaw
    gaze = perf["gaze"]
    eyes = np.zeros((T, 6))
    eyes[:, 0] = eyes[:, 3] = gaze[:, 0]
    eyes[:, 1] = eyes[:, 4] = gaze[:, 1]

    rotation = np.stack([_wave(u, rng, 0.10), _wave(u, rng, 0.22), _wave(u, rng, 0.06)], 1)
    neck = np.stack([_wave(u, rng, 0.08), _wave(u, rng, 0.10), _wave(u, rng, 0.04)], 1)
    translation = np.asarray(head_position, dtype=np.float64)[None] + np.stack(
        [_wave(u, rng, 0.012), _wave(u, rng, 0.008), _wave(u, rng, 0.015)], 1)

    params = {"translation": translation, "rotation": rotation, "neck_pose": neck, "jaw_pose": jaw,
              "eyes_pose": eyes, "expr": expr}
    return MotionSequence(name, {k: v.astype(np.float32) for k, v in params.items()})


def make_identity_shape(seed: int, n_shape: int = 300, n_active: int = 40, scale: float = 0.9) -> np.ndarray:
    """Identity shape coefficients (n_shape,) float32: the first ``n_active`` drawn ~ N(0, scale^2)
    with a decaying spectrum, the rest zero."""
    rng = np.random.default_rng([seed, 4242])
    shape = np.zeros(n_shape, dtype=np.float32)
    k = np.arange(n_active)
    shape[:n_active] = rng.normal(size=n_active) * scale / (1 + 0.05 * k)
    return shape


def relocate(params: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """VHAP's relocation: subtract the sequence's mean translation.

    Returns:
        the relocated params (copy) and the (4, 4) world transform ``M`` (translation by
        ``-mean``) that must be applied to camera-to-world matrices: ``c2w' = M @ c2w``.
    """
    out = dict(params)
    t_mean = params["translation"].astype(np.float64).mean(0)
    out["translation"] = (params["translation"] - t_mean[None]).astype(np.float32)
    M = np.eye(4)
    M[:3, 3] = -t_mean
    return out, M


__all__ = ["TRAIN_SEQUENCES", "FREE_SEQUENCE", "UNIT_NAMES", "ExpressionUnits", "MotionSequence",
           "make_sequence", "make_identity_shape", "relocate"]
