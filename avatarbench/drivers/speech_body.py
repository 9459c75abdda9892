"""Speech -> SMPL-X whole-body motion: idle sway, breathing, beat gestures, jaw from the face pipeline.

:class:`SpeechBodyDriver` adds *offsets* to a base pose (the target's first training pose):

- **sway and breathing**: spine1/spine2/spine3 rotate by slow sinusoids (sway 0.23 Hz about the
  vertical axis and 0.17 Hz sideways, <= 0.03 rad; breathing 0.25 Hz, 0.02 rad pitch on spine3);
- **nods**: the neck joint pitches with the face driver's nod signal;
- **beat gestures**: at the loudness peaks (local maxima of the smoothed loudness above 0.6,
  at least 0.45 s apart, plus stressed vowels from the phoneme timeline), alternating arms
  flex the elbow (up to 0.45 rad) and lift the shoulder forward (0.2 rad) with a smooth
  raised-cosine pulse of 0.5 s; the wrists follow with a quarter of the elbow angle. The flexion
  axis is derived from the rest skeleton: ``cross(forearm direction, +z)`` rotates the forearm
  towards the front, in the elbow's own rest frame (SMPL-X local rotations compose in the
  parent's rest frame, so this flexes the elbow whatever the shoulder does);
- **jaw**: the face pipeline's per-frame viseme weights give the inner-lip opening target
  ``o`` (units of FLAME's rest mouth width ``W0``); the jaw rotates about its lateral axis by
  ``atan(o W0 / r)`` with ``r`` the distance from FLAME's jaw joint to the lower-lip middle,
  measured on the loaded FLAME (a rigid-hinge approximation). ``expression`` stays zero (the
  SMPL-X expression space is not fitted; see docs/drivers.md).

Joint limits: every offset is clipped to :data:`OFFSET_LIMITS` (radians, per joint). The pelvis
(``global_orient``, ``transl``), the legs and the feet are never touched, so the feet do not
slide (tested by forward kinematics).
"""

from __future__ import annotations

import numpy as np

from avatarbench.drivers.base import ParamSequence

#: joint -> maximal |offset| (rad) per axis
OFFSET_LIMITS = {"spine1": 0.05, "spine2": 0.05, "spine3": 0.05, "neck": 0.08, "left_collar": 0.1,
                 "right_collar": 0.1, "left_shoulder": 0.3, "right_shoulder": 0.3, "left_elbow": 0.6,
                 "right_elbow": 0.6, "left_wrist": 0.2, "right_wrist": 0.2}
JAW_LIMIT = 0.35


def _rotvec_compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Axis-angle of R(a) @ R(b), row-wise (T, 3)."""
    from scipy.spatial.transform import Rotation

    return (Rotation.from_rotvec(a) * Rotation.from_rotvec(b)).as_rotvec()


def beat_times(loud: np.ndarray, fps: float, stressed: list[float], *, thresh: float = 0.6,
               min_gap: float = 0.45) -> list[float]:
    """Times (s) of beat gestures: loudness peaks above ``thresh`` and stressed vowels, >= min_gap apart."""
    cand = []
    for i in range(1, len(loud) - 1):
        if loud[i] >= thresh and loud[i] >= loud[i - 1] and loud[i] > loud[i + 1]:
            cand.append((float(loud[i]), i / fps))
    cand += [(1.0, t) for t in stressed]
    out: list[float] = []
    for _, t in sorted(cand, key=lambda c: -c[0]):
        if all(abs(t - s) >= min_gap for s in out):
            out.append(t)
    return sorted(out)


class SpeechBodyDriver:
    """Text or WAV -> SMPL-X parameter sequence (see module docstring).

    Args:
        face: a :class:`~avatarbench.drivers.speech_face.SpeechFaceDriver` (gives speech, viseme
            weights, nods).
        base: the target's SMPL-X driving dict of one frame (``body_pose (63,)``, ``global_orient``,
            ``transl``, hands, ...); missing keys are zeros.
        smplx: a loaded SMPL-X model (rest skeleton for the flexion axes); None = the default.
    """

    body_model = "smplx"

    def __init__(self, face, base: dict | None = None, smplx=None):
        self.face, self.base, self.smplx = face, dict(base or {}), smplx

    def _axes(self) -> dict[str, np.ndarray]:
        import torch

        from avatarbench.bodymodels.smplx import JOINT_NAMES, load_smplx

        m = self.smplx if self.smplx is not None else load_smplx()
        with torch.no_grad():
            J = m().joints[0].double().numpy()
        idx = {n: i for i, n in enumerate(JOINT_NAMES)}
        axes = {}
        for side in ("left", "right"):
            d = J[idx[f"{side}_wrist"]] - J[idx[f"{side}_elbow"]]
            a = np.cross(d / np.linalg.norm(d), [0.0, 0.0, 1.0])
            axes[f"{side}_elbow"] = a / np.linalg.norm(a)
            u = J[idx[f"{side}_elbow"]] - J[idx[f"{side}_shoulder"]]
            b = np.cross(u / np.linalg.norm(u), [0.0, 0.0, 1.0])
            axes[f"{side}_shoulder"] = b / np.linalg.norm(b)
        return axes

    def generate(self, speech=None) -> ParamSequence:
        from avatarbench.bodymodels.smplx import JOINT_NAMES
        from avatarbench.drivers.flame_fit import viseme_basis
        from avatarbench.drivers.visemes import is_stressed

        fseq = self.face.generate(speech)
        fps, T = fseq.fps, len(fseq)
        t = np.arange(T) / fps
        feat = fseq.features
        offs = {n: np.zeros((T, 3)) for n in OFFSET_LIMITS}
        offs["spine1"][:, 1] = 0.03 * np.sin(2 * np.pi * 0.23 * t)
        offs["spine2"][:, 2] = 0.02 * np.sin(2 * np.pi * 0.17 * t + 1.0)
        offs["spine3"][:, 0] = 0.02 * np.sin(2 * np.pi * 0.25 * t)
        offs["neck"][:, 0] = fseq.params["neck_pose"][:, 0]
        stressed = [p.start for p in fseq.speech.phonemes if is_stressed(p.symbol)]
        beats = beat_times(feat["loud"], fps, stressed)
        axes = self._axes()
        pulses = {"left": np.zeros(T), "right": np.zeros(T)}
        for k, b in enumerate(beats):
            side = "right" if k % 2 == 0 else "left"
            x = np.clip((t - b) / 0.5, -1.0, 1.0)
            pulses[side] = np.maximum(pulses[side], 0.5 * (1.0 + np.cos(np.pi * x)))
        for side in ("left", "right"):
            p = pulses[side][:, None]
            offs[f"{side}_elbow"] += 0.45 * p * axes[f"{side}_elbow"][None]
            offs[f"{side}_shoulder"] += 0.2 * p * axes[f"{side}_shoulder"][None]
            offs[f"{side}_wrist"] += 0.25 * 0.45 * p * axes[f"{side}_elbow"][None]
        for n, lim in OFFSET_LIMITS.items():
            offs[n] = np.clip(offs[n], -lim, lim)

        body = np.tile(np.asarray(self.base.get("body_pose", np.zeros(63)), np.float64).reshape(1, 63), (T, 1))
        for n, o in offs.items():
            j = JOINT_NAMES.index(n) - 1  # body_pose starts at joint 1
            body[:, 3 * j:3 * j + 3] = _rotvec_compose(body[:, 3 * j:3 * j + 3], o)
        # jaw: hinge about the lateral axis, opening from the viseme targets (module docstring)
        model = self.face.model
        if model is None:
            from avatarbench.bodymodels.flame import load_flame

            model = load_flame(teeth=True)
        rig, basis = viseme_basis(model)
        import torch

        with torch.no_grad():
            out = model()
        mid = rig.outer_lower[len(rig.outer_lower) // 2]
        r = float(torch.linalg.norm(out.verts[0, mid] - out.joints[0, 2]))
        opening = np.clip(fseq.viseme_weights @ basis.targets[:, 0], 0.0, None)
        jaw = np.zeros((T, 3))
        jaw[:, 0] = np.clip(np.arctan(opening * rig.rest_width / r), 0.0, JAW_LIMIT)

        def rep(key, n):
            v = np.asarray(self.base.get(key, np.zeros(n)), np.float32).reshape(1, n)
            return np.repeat(v, T, axis=0)

        params = {"global_orient": rep("global_orient", 3), "transl": rep("transl", 3),
                  "body_pose": body.astype(np.float32), "jaw_pose": jaw.astype(np.float32),
                  "left_hand_pose": rep("left_hand_pose", 45), "right_hand_pose": rep("right_hand_pose", 45),
                  "leye_pose": rep("leye_pose", 3), "reye_pose": rep("reye_pose", 3),
                  "expression": np.zeros((T, 10), np.float32)}
        meta = {"driver": fseq.meta["driver"], "mode": fseq.meta["mode"], "text": fseq.meta.get("text"),
                "beats_s": beats}
        seq = ParamSequence("smplx", fps, params, fseq.speech, meta)
        seq.offsets = offs
        return seq
