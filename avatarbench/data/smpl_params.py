"""Per-frame SMPL-X driving parameters: the ``smpl_params.npz`` file of the body datasets.

AvatarReX, THuman4.0 and ActorsHQ (as used by Animatable Gaussians) all store one
``smpl_params.npz`` per subject with these keys (F = number of frames, axis-angle in radians):

==================  ===========  ==========================================================
key                 shape        notes
==================  ===========  ==========================================================
``betas``           (1, S)       shape coefficients (S = 10 in the released fits); row 0 is
                                 used for every frame (also accepted: (S,) or (N, S))
``global_orient``   (F, 3)       root rotation
``transl``          (F, 3)       root translation (metres)
``body_pose``       (F, 63)      21 body joints x 3 (also accepted: (F, 21, 3))
``jaw_pose``        (F, 3)
``expression``      (F, E)       E = 10 in the released fits
``left_hand_pose``  (F, 45)      15 joints x 3, full axis-angle (not PCA), flat hand mean
``right_hand_pose`` (F, 45)
==================  ===========  ==========================================================

Optional keys ``leye_pose`` / ``reye_pose`` (F, 3) are kept when present (zero otherwise).
Everything is cast to float32. Bad files raise :class:`avatarbench.errors.DataError` naming the
file, the key and the expected shape.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatarbench.errors import DataError

#: per-frame keys and their expected trailing size (None = any positive size)
FRAME_KEYS: dict[str, int | None] = {
    "global_orient": 3,
    "transl": 3,
    "body_pose": 63,
    "jaw_pose": 3,
    "expression": None,
    "left_hand_pose": 45,
    "right_hand_pose": 45,
}
OPTIONAL_FRAME_KEYS: dict[str, int] = {"leye_pose": 3, "reye_pose": 3}
REQUIRED_KEYS = ("betas",) + tuple(FRAME_KEYS)
#: keys of one frame's driving dict (see :meth:`SmplxParams.frame`)
DRIVING_KEYS = ("betas",) + tuple(FRAME_KEYS) + tuple(OPTIONAL_FRAME_KEYS)


@dataclass
class SmplxParams:
    """A validated SMPL-X parameter sequence.

    Attributes:
        path: the file it was read from.
        betas: (S,) float32 shape coefficients (shared by all frames).
        per_frame: key -> (F, D) float32 array, for every key of :data:`FRAME_KEYS` and
            :data:`OPTIONAL_FRAME_KEYS` (optional ones filled with zeros when absent).
    """

    path: Path
    betas: np.ndarray
    per_frame: dict[str, np.ndarray]

    @property
    def num_frames(self) -> int:
        return int(self.per_frame["body_pose"].shape[0])

    def frame(self, t: int) -> dict[str, np.ndarray]:
        """Driving parameters of frame ``t`` without batch dim: ``betas (S,)``, ``global_orient (3,)``,
        ``transl (3,)``, ``body_pose (63,)``, ``jaw_pose (3,)``, ``leye_pose (3,)``, ``reye_pose (3,)``,
        ``expression (E,)``, ``left_hand_pose (45,)``, ``right_hand_pose (45,)`` (float32)."""
        if not 0 <= t < self.num_frames:
            raise DataError(self.path, f"frame {t} requested", f"0 <= frame < {self.num_frames}")
        d = {"betas": self.betas}
        d.update({k: v[t] for k, v in self.per_frame.items()})
        return d

    def with_betas(self, betas: np.ndarray) -> "SmplxParams":
        """The same motion with other shape coefficients (cross-driving keeps the target's betas)."""
        return SmplxParams(self.path, np.asarray(betas, dtype=np.float32).reshape(-1), self.per_frame)


def conversion_hint(path: Path) -> str:
    """A one-line command that rewrites a (trusted) pickled parameter file as plain float32 arrays,
    the way the official loader reads it (``np.load(allow_pickle=True)`` then ``astype(float32)``)."""
    p = str(path).replace("'", "\\'")
    return ("if you trust the file, convert it once with: python -c \"import numpy as np; p='" + p + "'; "
            "z=np.load(p, allow_pickle=True); d={k: np.asarray(z[k], np.float32) for k in z}; np.savez(p, **d)\"")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive, without unpickling anything.

    Files the official loader accepts only through pickle (a pickled dict saved under the ``.npz``
    name, or archives holding object arrays) raise a one-line :class:`DataError` that names the
    file (and the key) and gives the command that converts them.
    """
    if not path.exists():
        raise DataError(path, "SMPL-X parameter file not found", "smpl_params.npz next to the calibration")
    with open(path, "rb") as fp:
        magic = fp.read(6)
    if magic[:1] == b"\x80":
        raise DataError(path, "is a pickled object, not an .npz archive (reading it would need pickle, which can "
                              "run code)", "an .npz of numeric arrays; " + conversion_hint(path))
    if magic == b"\x93NUMPY":
        raise DataError(path, "is a single .npy array, not an .npz archive", "an .npz with one array per key")
    try:
        z = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise DataError(path, f"unreadable npz ({e})", "a numpy .npz archive of numeric arrays") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(path, f"unreadable npz ({type(e).__name__})", "a numpy .npz archive") from None
    out: dict[str, np.ndarray] = {}
    with z:
        for k in z.files:
            try:
                out[k] = np.asarray(z[k])
            except ValueError:  # object arrays need pickle: refuse, they are not plain numbers
                raise DataError(path, f"key {k!r} is an object array (reading it would need pickle, which can run "
                                      "code)", "numeric arrays; " + conversion_hint(path)) from None
            except (OSError, zipfile.BadZipFile, EOFError) as e:
                raise DataError(path, f"key {k!r} is unreadable ({type(e).__name__})", "a numpy .npz archive") from None
    return out


def validate_smplx_params(raw: dict[str, np.ndarray], path: str | Path = "<memory>") -> SmplxParams:
    """Check keys/shapes of a raw parameter dict and return a :class:`SmplxParams`.

    Raises:
        DataError: a missing key, a wrong shape, inconsistent frame counts or non-finite values.
    """
    path = Path(path)
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise DataError(path, f"missing key(s) {', '.join(repr(k) for k in missing)}",
                        f"keys {', '.join(REQUIRED_KEYS)}")
    if "body_pose" in raw and raw["body_pose"].ndim >= 1:
        n_frames = int(np.asarray(raw["body_pose"]).shape[0])
    else:
        n_frames = 0
    if n_frames < 1:
        raise DataError(path, f"key 'body_pose' has shape {np.asarray(raw['body_pose']).shape}", "(F, 63) with F >= 1")

    betas = np.asarray(raw["betas"])
    if not np.issubdtype(betas.dtype, np.number) or betas.ndim not in (1, 2) or betas.shape[-1] < 1 \
            or (betas.ndim == 2 and betas.shape[0] < 1):
        raise DataError(path, f"key 'betas' has shape {betas.shape}", "(1, S) (or (S,))")
    betas = (betas if betas.ndim == 1 else betas[0]).astype(np.float32)

    per_frame: dict[str, np.ndarray] = {}
    specs = dict(FRAME_KEYS)
    specs.update({k: v for k, v in OPTIONAL_FRAME_KEYS.items() if k in raw})
    for key, size in specs.items():
        a = np.asarray(raw[key])
        want = f"({n_frames}, {size if size else 'E'})"
        if not np.issubdtype(a.dtype, np.number):
            raise DataError(path, f"key {key!r} has dtype {a.dtype}", f"numbers of shape {want}")
        if a.ndim == 3 and size and a.shape[1] * a.shape[2] == size and a.shape[2] == 3:
            a = a.reshape(a.shape[0], size)  # (F, J, 3) -> (F, J*3)
        if a.ndim != 2 or a.shape[0] != n_frames or (size is not None and a.shape[1] != size) or a.shape[1] < 1:
            raise DataError(path, f"key {key!r} has shape {a.shape}", want)
        per_frame[key] = a.astype(np.float32)
    for key, size in OPTIONAL_FRAME_KEYS.items():
        per_frame.setdefault(key, np.zeros((n_frames, size), np.float32))
    for key, a in [("betas", betas)] + list(per_frame.items()):
        if not np.isfinite(a).all():
            raise DataError(path, f"key {key!r} has non-finite values", "finite numbers")
    return SmplxParams(path, betas, per_frame)


def load_smplx_params(path: str | Path) -> SmplxParams:
    """Read and validate a ``smpl_params.npz`` (see the module docstring for the format)."""
    path = Path(path)
    return validate_smplx_params(_read_npz(path), path)


def save_smplx_params(path: str | Path, betas: np.ndarray, per_frame: dict[str, np.ndarray]) -> None:
    """Write a ``smpl_params.npz`` in the dataset format, with deterministic bytes.

    Args:
        betas: (S,) or (1, S); stored as (1, S).
        per_frame: key -> (F, D) arrays (the keys of :data:`FRAME_KEYS`, optionally eye poses).
    """
    arrays = {"betas": np.asarray(betas, np.float32).reshape(1, -1)}
    arrays.update({k: np.asarray(v, np.float32) for k, v in per_frame.items()})
    validate_smplx_params(arrays, path)
    write_npz_deterministic(path, arrays)


def write_npz_deterministic(path: str | Path, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    """Write an ``.npz`` readable by :func:`numpy.load` whose bytes depend only on the arrays.

    ``numpy.savez`` stamps each zip entry with the current time; here every entry gets the fixed
    1980-01-01 timestamp and the keys are written in the given order.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            arr = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)  # keeps 0-d arrays 0-d
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())
