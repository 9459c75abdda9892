"""FLAME parameter files as written by VHAP (``flame_param/{ti:05d}.npz``): read, validate, stack.

One npz holds one timestep (VHAP ``write_flame_param``)::

    shape          (300,)      identity; (1, 300) is accepted too
    expr           (1, 100)
    rotation       (1, 3)      axis-angle, global/root
    neck_pose      (1, 3)      axis-angle
    jaw_pose       (1, 3)      axis-angle
    eyes_pose      (1, 6)      two axis-angles (left, right)
    translation    (1, 3)      after VHAP's per-sequence recentring
    static_offset  (1, V, 3)   canonical per-vertex offset (V = 5143 for FLAME 2023 + teeth); optional
                               (absent when tracked with ``--model.no_use_static_offset``)
    dynamic_offset (1, V, 3)   optional (only with VHAP ``use_dynamic_offset``)

:func:`read_flame_params` strips the batch dimension and returns float32 arrays::

    shape (300,) expr (100,) rotation (3,) neck_pose (3,) jaw_pose (3,) eyes_pose (6,)
    translation (3,) static_offset (V, 3) [dynamic_offset (V, 3)]

Arrays given without the batch dimension (e.g. ``expr (100,)``) are accepted; any other shape
raises :class:`~avatarbench.errors.DataError` naming the file, the key, the shape found and the
shape expected. Keys not listed above are ignored.
"""

from __future__ import annotations

import functools
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from avatarbench.errors import DataError

#: keys that every FLAME parameter file must have
REQUIRED_KEYS = ("shape", "expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation")
#: keys that are read when present
OPTIONAL_KEYS = ("static_offset", "dynamic_offset")
#: per-vertex keys, shape (V, 3) after stripping the batch dim
VERTEX_KEYS = ("static_offset", "dynamic_offset")

#: the identity of a FLAME subject: kept from the target in cross-identity reenactment
FLAME_IDENTITY_KEYS = ("shape", "static_offset")
#: the motion of a FLAME sequence: transferred absolutely from the driver (GaussianAvatars)
FLAME_MOTION_KEYS = ("expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation")


def _vector_sizes(n_shape: int, n_expr: int) -> dict[str, int]:
    return {"shape": n_shape, "expr": n_expr, "rotation": 3, "neck_pose": 3, "jaw_pose": 3,
            "eyes_pose": 6, "translation": 3}


def _fmt(shape: tuple) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def validate_flame_params(raw: Mapping[str, np.ndarray], path: str | Path, *, n_shape: int = 300,
                          n_expr: int = 100, num_verts: int | None = None,
                          required: Sequence[str] = REQUIRED_KEYS) -> dict[str, np.ndarray]:
    """Check keys and shapes of one timestep's FLAME parameters and strip the batch dim.

    Args:
        raw: arrays as stored (with or without the leading batch dim of 1).
        path: the file they came from (for error messages).
        n_shape, n_expr: expected sizes of ``shape`` and ``expr``.
        num_verts: expected V of ``static_offset``/``dynamic_offset``; None accepts any V.
        required: keys that must be present.
    Returns:
        dict of float32 arrays without batch dim (see module docstring).
    Raises:
        DataError: missing key, wrong shape, or non-finite values.
    """
    sizes = _vector_sizes(n_shape, n_expr)
    for key in required:
        if key not in raw:
            raise DataError(path, f"missing key {key!r}",
                            f"FLAME parameters with keys {', '.join(REQUIRED_KEYS)}")
    out: dict[str, np.ndarray] = {}
    for key, n in sizes.items():
        if key not in raw:
            continue
        a = np.asarray(raw[key])
        if a.shape == (1, n):
            a = a[0]
        if a.shape != (n,):
            want = f"(1, {n})" if key != "shape" else f"({n},) or (1, {n})"
            raise DataError(path, f"key {key!r} has shape {_fmt(a.shape)}", want)
        out[key] = a
    v_seen = num_verts
    for key in VERTEX_KEYS:
        if key not in raw:
            continue
        a = np.asarray(raw[key])
        if a.ndim == 3 and a.shape[0] == 1:
            a = a[0]
        ok = a.ndim == 2 and a.shape[1] == 3 and (v_seen is None or a.shape[0] == v_seen)
        if not ok:
            want = f"(1, {v_seen if v_seen is not None else 'V'}, 3)"
            raise DataError(path, f"key {key!r} has shape {_fmt(np.asarray(raw[key]).shape)}", want)
        v_seen = a.shape[0]
        out[key] = a
    for key, a in out.items():
        if not np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_:
            raise DataError(path, f"key {key!r} has dtype {a.dtype}", "floating-point values")
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise DataError(path, f"key {key!r} has non-finite values", "finite floats")
        out[key] = a
    return out


def read_flame_params(path: str | Path, *, n_shape: int = 300, n_expr: int = 100,
                      num_verts: int | None = None, required: Sequence[str] = REQUIRED_KEYS
                      ) -> dict[str, np.ndarray]:
    """Read and validate one FLAME parameter npz (see module docstring for shapes).

    Raises:
        DataError: file missing, unreadable, or with missing keys / wrong shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "FLAME parameter file not found", "a VHAP flame_param .npz")
    try:
        with np.load(path, allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise DataError(path, f"unreadable npz ({type(e).__name__})", "a numpy .npz archive") from None
    return validate_flame_params(raw, path, n_shape=n_shape, n_expr=n_expr, num_verts=num_verts,
                                 required=required)


class LazyParams(Mapping):
    """A read-only mapping of driving parameters that is computed on first access and cached.

    Frames of the same timestep share one instance, so each npz is read at most once. Instances
    pickle (for DataLoader workers) when ``loader`` does, e.g. a ``functools.partial`` of a
    module-level function.

    Args:
        loader: returns the dict of float32 arrays (no batch dim).
        source: a description for ``repr`` (usually the npz path).
    """

    __slots__ = ("_loader", "_data", "source")

    def __init__(self, loader: Callable[[], dict[str, np.ndarray]], source: str = ""):
        self._loader = loader
        self._data: dict[str, np.ndarray] | None = None
        self.source = source

    @classmethod
    def from_file(cls, path: str | Path, **kw) -> "LazyParams":
        """Lazily :func:`read_flame_params` ``path``."""
        p = Path(path)
        return cls(functools.partial(read_flame_params, p, **kw), str(p))

    @property
    def loaded(self) -> bool:
        return self._data is not None

    def load(self) -> dict[str, np.ndarray]:
        """Force loading; returns the cached dict."""
        if self._data is None:
            self._data = self._loader()
        return self._data

    def prime(self, data: dict[str, np.ndarray]) -> "LazyParams":
        """Set the cached value (when it was already read, e.g. for eager validation)."""
        self._data = data
        return self

    def __getitem__(self, key: str) -> np.ndarray:
        return self.load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.load())

    def __len__(self) -> int:
        return len(self.load())

    def __contains__(self, key) -> bool:
        return key in self.load()

    def __repr__(self) -> str:
        state = f"{len(self._data)} keys" if self._data is not None else "not loaded"
        return f"LazyParams({self.source!r}, {state})"


def stack_flame_params(params: Sequence[Mapping[str, np.ndarray]], keys: Sequence[str] | None = None,
                       device=None, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Stack per-timestep parameters into tensors with a leading time dim.

    Args:
        params: T dicts (e.g. ``[subject.driving(t) for t in timesteps]``), arrays without batch dim.
        keys: keys to stack; default all keys present in every dict (the optional
            ``dynamic_offset`` is dropped unless all dicts have it).
    Returns:
        dict key -> (T, ...) tensor, e.g. ``expr (T, 100)``, ``static_offset (T, V, 3)``.
    Raises:
        ValueError: empty input, a requested key missing from some dict, or mismatched shapes.
    """
    if len(params) == 0:
        raise ValueError("stack_flame_params: no parameters to stack")
    if keys is None:
        keys = [k for k in params[0] if all(k in p for p in params[1:])]
    out: dict[str, torch.Tensor] = {}
    for k in keys:
        arrs = []
        for i, p in enumerate(params):
            if k not in p:
                raise ValueError(f"stack_flame_params: timestep {i} has no key {k!r}")
            arrs.append(np.asarray(p[k]))
        shapes = {a.shape for a in arrs}
        if len(shapes) != 1:
            raise ValueError(f"stack_flame_params: key {k!r} has different shapes {sorted(shapes)}")
        out[k] = torch.as_tensor(np.stack(arrs), dtype=dtype, device=device)
    return out
