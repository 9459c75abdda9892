"""NeRSemble benchmark FLAME 2023 tracking (``flame2023_tracking_v2.npz``): read, check, convert.

One npz per sequence (``nersemble_benchmark.data.benchmark_data.FlameTracking``)::

    shape (1, 300)  expression (T, 100)  rotation (T, 3)  rotation_matrices (T, 3, 3)
    translation (T, 3)  jaw (T, 3)  frames (T,)  scale (1, 1)  neck (T, 3)  eyes (T, 6)

The toolkit's ``FlameProvider`` (``models/flame.py``) turns it into world-space vertices as::

    v_model = FLAME(shape, expression, pose=[0, 0, 0, jaw], neck, eyes, transl=None)   (5023, 3)
    M       = Pose.from_euler(rotation[t], translation[t], 'XYZ');  M[:3, :3] *= scale
    v_world = v_model @ M[:3, :3].T + M[:3, 3]  =  scale * R_xyz(rotation[t]) v_model + translation[t]

``Pose.from_euler`` is dreifus' ``scipy.spatial.transform.Rotation.from_euler('XYZ', ...)``:
intrinsic rotations, ``R = Rx(a) @ Ry(b) @ Rz(c)``.

The suite's FLAME layer (:class:`avatarbench.bodymodels.flame.FlameModel`) applies ``rotation`` as
an axis-angle at the root joint ``J0`` (which depends on shape and expression) and adds
``translation`` after skinning, and it has no scale. :func:`tracking_to_driving` converts exactly:

- ``rotation`` -> ``R = R_xyz(rotation)`` as an axis-angle vector;
- ``neck``, ``jaw``, ``eyes``, ``shape``, ``expression`` -> ``neck_pose``, ``jaw_pose``,
  ``eyes_pose``, ``shape``, ``expr`` unchanged (both layers use the joint order root, neck, jaw,
  left eye, right eye and betas = [300 shape, 100 expression]);
- the scale is moved into the world unit: the sequence is expressed in the frame
  ``w' = w / scale``, where the mesh is ``R v_model + translation / scale``. The cameras of the
  sequence are expressed in the same frame by dividing their world-to-camera translation by
  ``scale`` (a camera-space point is then scaled by ``1/scale``, which projects to the same pixel);
- ``translation' = translation / scale + R J0 - J0``, with ``J0 = J_regressor[0] (v_template +
  shapedirs [shape, expression])``, because the suite rotates about ``J0`` and the toolkit about
  the model origin.

So ``scale * FlameModel(driving').verts[:5023] == v_world`` (exact up to float rounding), and images
are unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avatarbench.errors import DataError

TRACKING_FILE = "flame2023_tracking_v2.npz"

#: key -> shape with "T" for the number of frames (the toolkit's ``FlameTracking`` fields)
TRACKING_KEYS: dict[str, tuple] = {
    "shape": (1, 300),
    "expression": ("T", 100),
    "rotation": ("T", 3),
    "rotation_matrices": ("T", 3, 3),
    "translation": ("T", 3),
    "jaw": ("T", 3),
    "frames": ("T",),
    "scale": (1, 1),
    "neck": ("T", 3),
    "eyes": ("T", 6),
}


def _fmt(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def read_tracking(path: str | Path) -> dict[str, np.ndarray]:
    """Read and check one tracking v2 file.

    The key set must be exactly :data:`TRACKING_KEYS` (the toolkit's ``FlameTracking(**npz)``
    fails on any extra or missing key as well).

    Returns:
        key -> float64 array (``frames`` int64), shapes as in :data:`TRACKING_KEYS`.
    Raises:
        DataError: missing/unreadable file, extra or missing keys, wrong shapes, non-finite values,
            scale <= 0.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "tracking file not found", f"{TRACKING_FILE} (is the download complete?)")
    try:
        with np.load(path, allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile / pickle refusal / truncated file
        raise DataError(path, f"unreadable npz ({type(e).__name__})", "a numpy .npz tracking file") from None
    keys = set(raw)
    missing = [k for k in TRACKING_KEYS if k not in keys]
    extra = sorted(keys - set(TRACKING_KEYS))
    if missing or extra:
        parts = ([f"missing key(s) {', '.join(missing)}"] if missing else []) + \
                ([f"extra key(s) {', '.join(extra)}"] if extra else [])
        raise DataError(path, "; ".join(parts), f"exactly the keys {', '.join(TRACKING_KEYS)}")
    T = raw["expression"].shape[0] if raw["expression"].ndim >= 1 else -1
    out: dict[str, np.ndarray] = {}
    for k, spec in TRACKING_KEYS.items():
        want = tuple(T if s == "T" else s for s in spec)
        a = raw[k]
        if a.shape != want:
            raise DataError(path, f"key {k!r} has shape {_fmt(a.shape)}", _fmt(want))
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise DataError(path, f"key {k!r} has dtype {a.dtype}", "a numeric array")
        a = a.astype(np.int64 if k == "frames" else np.float64)
        if k != "frames" and not np.all(np.isfinite(a)):
            raise DataError(path, f"key {k!r} holds non-finite values", "finite numbers")
        out[k] = a
    if T < 1:
        raise DataError(path, "no frames (T = 0)", "at least one tracked frame")
    if out["scale"][0, 0] <= 0:
        raise DataError(path, f"key 'scale' is {out['scale'][0, 0]}", "a positive number")
    return out


def euler_xyz_to_matrix(angles: np.ndarray) -> np.ndarray:
    """(T, 3) intrinsic 'XYZ' Euler angles (radians) -> (T, 3, 3) ``Rx @ Ry @ Rz``, float64."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("XYZ", np.asarray(angles, np.float64)).as_matrix()


def root_joint_linear(arrays: dict) -> tuple[np.ndarray, np.ndarray]:
    """The root joint as a linear function of betas: ``J0 = j0 + dirs @ [shape(300), expr(100)]``.

    Args:
        arrays: :func:`avatarbench.bodymodels.flame.read_flame_file` arrays (``v_template (V,3)``,
            ``shapedirs (V,3,>=400)``, ``J_regressor (5,V)``).
    Returns:
        ``j0 (3,)``, ``dirs (3, 400)``, float64.
    """
    jr0 = np.asarray(arrays["J_regressor"], np.float64)[0]
    j0 = jr0 @ np.asarray(arrays["v_template"], np.float64)
    sd = np.asarray(arrays["shapedirs"], np.float64)[:, :, :400]
    dirs = np.einsum("v,vcd->cd", jr0, sd)
    return j0, dirs


def tracking_to_driving(tr: dict[str, np.ndarray], j0: np.ndarray, j0_dirs: np.ndarray
                        ) -> tuple[dict[str, np.ndarray], float]:
    """Convert a tracking (from :func:`read_tracking`) to the suite's FLAME driving parameters.

    Args:
        tr: the tracking arrays.
        j0, j0_dirs: from :func:`root_joint_linear` for the FLAME model the tracking belongs to.
    Returns:
        ``(driving, scale)``: driving key -> float32 (T, n) array (``shape (T,300) expr (T,100)
        rotation neck_pose jaw_pose translation (T,3) eyes_pose (T,6)``) in the world frame divided
        by ``scale``, and ``scale`` (float). See the module docstring.
    """
    T = tr["expression"].shape[0]
    s = float(tr["scale"][0, 0])
    R = euler_xyz_to_matrix(tr["rotation"])
    from scipy.spatial.transform import Rotation

    rotvec = Rotation.from_matrix(R).as_rotvec()
    shape = np.repeat(tr["shape"], T, axis=0)
    betas = np.concatenate([shape, tr["expression"]], axis=1)  # (T, 400)
    J0 = j0[None] + betas @ j0_dirs.T  # (T, 3)
    transl = tr["translation"] / s + np.einsum("tij,tj->ti", R, J0) - J0
    driving = {"shape": shape, "expr": tr["expression"], "rotation": rotvec, "neck_pose": tr["neck"],
               "jaw_pose": tr["jaw"], "eyes_pose": tr["eyes"], "translation": transl}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in driving.items()}, s


def driving_to_tracking(driving: dict[str, np.ndarray], scale: float, j0: np.ndarray, j0_dirs: np.ndarray,
                        frames: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The inverse of :func:`tracking_to_driving` (used by the synthetic stand-in writer).

    Args:
        driving: (T, n) arrays as returned by :func:`tracking_to_driving` (``shape`` may be (300,)).
        scale: the tracking's scale; the driving is in the world frame divided by it.
    Returns:
        the tracking v2 arrays (float32, ``frames`` int64), keys exactly :data:`TRACKING_KEYS`.
    """
    from scipy.spatial.transform import Rotation

    expr = np.asarray(driving["expr"], np.float64)
    T = expr.shape[0]
    shape = np.asarray(driving["shape"], np.float64).reshape(-1, 300)[:1]
    rot = Rotation.from_rotvec(np.asarray(driving["rotation"], np.float64).reshape(T, 3))
    R = rot.as_matrix()
    betas = np.concatenate([np.repeat(shape, T, axis=0), expr], axis=1)
    J0 = j0[None] + betas @ j0_dirs.T
    t = (np.asarray(driving["translation"], np.float64).reshape(T, 3) - np.einsum("tij,tj->ti", R, J0) + J0) * scale
    out = {"shape": shape, "expression": expr, "rotation": rot.as_euler("XYZ"), "rotation_matrices": R,
           "translation": t, "jaw": np.asarray(driving["jaw_pose"], np.float64).reshape(T, 3),
           "frames": np.arange(T) if frames is None else np.asarray(frames),
           "scale": np.array([[scale]], np.float64),
           "neck": np.asarray(driving["neck_pose"], np.float64).reshape(T, 3),
           "eyes": np.asarray(driving["eyes_pose"], np.float64).reshape(T, 6)}
    return {k: (v.astype(np.int64) if k == "frames" else v.astype(np.float32)) for k, v in out.items()}
