"""Manual driving controls -> driving parameters.

Every control is an offset on the current timeline frame's parameters (all zeros = the frame
itself), so the sliders drive any sequence by hand:

- heads (FLAME): ``jaw_open`` / ``jaw_side`` add to ``jaw_pose[0]`` / ``[1]``; ``expr_i`` adds to
  ``expr[i]``; ``eyes_pitch`` / ``eyes_yaw`` add to both eyes (``eyes_pose[0, 3]`` / ``[1, 4]``);
  ``neck_pitch|yaw|roll`` add to ``neck_pose[0|1|2]``; ``head_pitch|yaw|roll`` rotate the global
  ``rotation``: ``R = R_x(pitch) R_y(yaw) R_z(roll) R_frame`` (composed, not added);
- bodies (SMPL-X): ``orient_pitch|yaw|roll`` compose with ``global_orient`` the same way;
  ``pose_pc_i`` moves ``body_pose`` along the i-th principal component of the subject's training
  poses, in units of its standard deviation: ``body_pose += c_i sigma_i v_i``.

Angles are radians.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class Control:
    name: str
    label: str
    lo: float
    hi: float


def rotvec_to_matrix(r: np.ndarray) -> np.ndarray:
    """(3,) axis-angle -> (3, 3) rotation (Rodrigues), float64."""
    r = np.asarray(r, dtype=np.float64)
    th = float(np.linalg.norm(r))
    if th < 1e-12:
        return np.eye(3)
    k = r / th
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(th) * K + (1 - np.cos(th)) * (K @ K)


def matrix_to_rotvec(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (3,) axis-angle with angle in [0, pi], float64."""
    R = np.asarray(R, dtype=np.float64)
    cos = np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)
    th = float(np.arccos(cos))
    if th < 1e-9:
        return np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / 2
    if np.pi - th < 1e-6:  # near pi: axis from the symmetric part
        M = (R + np.eye(3)) / 2
        axis = np.sqrt(np.clip(np.diag(M), 0, None))
        i = int(np.argmax(axis))
        axis = M[:, i] / np.sqrt(M[i, i])
        return axis * th
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    return w * th / (2 * np.sin(th))


def euler_offset(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """(3, 3) ``R_x(pitch) R_y(yaw) R_z(roll)``."""
    return rotvec_to_matrix([pitch, 0, 0]) @ rotvec_to_matrix([0, yaw, 0]) @ rotvec_to_matrix([0, 0, roll])


def head_controls(n_expr: int = 5) -> list[Control]:
    out = [Control("jaw_open", "jaw open", -0.1, 0.6), Control("jaw_side", "jaw side", -0.2, 0.2)]
    out += [Control(f"expr_{i}", f"expression {i}", -3.0, 3.0) for i in range(n_expr)]
    out += [Control("eyes_pitch", "eyes pitch", -0.5, 0.5), Control("eyes_yaw", "eyes yaw", -0.6, 0.6)]
    out += [Control(f"neck_{a}", f"neck {a}", -0.6, 0.6) for a in ("pitch", "yaw", "roll")]
    out += [Control(f"head_{a}", f"head {a}", -1.0, 1.0) for a in ("pitch", "yaw", "roll")]
    return out


def body_controls(n_pcs: int = 4) -> list[Control]:
    out = [Control(f"orient_{a}", f"global {a}", -np.pi, np.pi) for a in ("pitch", "yaw", "roll")]
    out += [Control(f"pose_pc_{i}", f"pose component {i}", -3.0, 3.0) for i in range(n_pcs)]
    return out


@dataclass
class PosePCA:
    """Principal components of training ``body_pose`` vectors.

    Attributes:
        mean: (D,) mean pose.
        components: (K, D) orthonormal directions, leading first.
        std: (K,) standard deviation along each.
    """

    mean: np.ndarray
    components: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, poses: np.ndarray, k: int) -> "PosePCA":
        """``poses``: (F, D) float; keeps min(k, F, D) components."""
        X = np.asarray(poses, dtype=np.float64).reshape(len(poses), -1)
        mean = X.mean(0)
        _, s, vt = np.linalg.svd(X - mean, full_matrices=False)
        k = min(k, len(s))
        std = s[:k] / np.sqrt(max(1, len(X) - 1))
        return cls(mean=mean, components=vt[:k], std=std)


def _compose(rotvec, pitch, yaw, roll) -> np.ndarray:
    return matrix_to_rotvec(euler_offset(pitch, yaw, roll) @ rotvec_to_matrix(rotvec))


def apply_head_controls(driving: Mapping[str, np.ndarray], values: Mapping[str, float]) -> dict[str, np.ndarray]:
    """FLAME driving dict with the control offsets applied (input untouched; float32 arrays)."""
    d = {k: np.array(v, dtype=np.float64, copy=True) for k, v in driving.items()}
    v = {k: float(x) for k, x in values.items()}
    if "jaw_pose" in d:
        d["jaw_pose"][0] += v.get("jaw_open", 0.0)
        d["jaw_pose"][1] += v.get("jaw_side", 0.0)
    if "expr" in d:
        for name, x in v.items():
            if name.startswith("expr_"):
                i = int(name[5:])
                if i < d["expr"].shape[0]:
                    d["expr"][i] += x
    if "eyes_pose" in d:
        d["eyes_pose"][[0, 3]] += v.get("eyes_pitch", 0.0)
        d["eyes_pose"][[1, 4]] += v.get("eyes_yaw", 0.0)
    if "neck_pose" in d:
        for i, a in enumerate(("pitch", "yaw", "roll")):
            d["neck_pose"][i] += v.get(f"neck_{a}", 0.0)
    if "rotation" in d:
        d["rotation"] = _compose(d["rotation"], v.get("head_pitch", 0.0), v.get("head_yaw", 0.0),
                                 v.get("head_roll", 0.0))
    return {k: x.astype(np.float32) for k, x in d.items()}


def apply_body_controls(driving: Mapping[str, np.ndarray], values: Mapping[str, float],
                        pca: PosePCA | None) -> dict[str, np.ndarray]:
    """SMPL-X driving dict with the control offsets applied (input untouched; float32 arrays)."""
    d = {k: np.array(v, dtype=np.float64, copy=True) for k, v in driving.items()}
    v = {k: float(x) for k, x in values.items()}
    if "global_orient" in d:
        d["global_orient"] = _compose(d["global_orient"], v.get("orient_pitch", 0.0), v.get("orient_yaw", 0.0),
                                      v.get("orient_roll", 0.0))
    if pca is not None and "body_pose" in d:
        shape = d["body_pose"].shape
        flat = d["body_pose"].reshape(-1)
        for i in range(len(pca.std)):
            flat = flat + v.get(f"pose_pc_{i}", 0.0) * pca.std[i] * pca.components[i]
        d["body_pose"] = flat.reshape(shape)
    return {k: x.astype(np.float32) for k, x in d.items()}
