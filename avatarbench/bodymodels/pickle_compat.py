"""Load chumpy-era model pickles (FLAME, SMPL family) without chumpy installed.

The licensed model files (FLAME 2020 ``generic_model.pkl``, FLAME 2023 ``flame2023.pkl``,
``FLAME_masks.pkl``, SMPL ``*.pkl``) were written by Python 2 with some arrays stored as chumpy
objects and the joint regressor as a scipy sparse matrix. chumpy does not install on current
Python/NumPy, so :class:`LegacyUnpickler` maps every ``chumpy.*`` class to a stub that keeps the
pickled state and turns it back into a NumPy array afterwards:

- ``chumpy.ch.Ch``: the value is the state key ``x``;
- ``chumpy.reordering.{Select, Reshape, transpose}``: evaluated from their operand ``a``.

scipy sparse matrices are rebuilt from their raw fields (``data``/``indices``/``indptr`` or
``data``/``row``/``col`` and ``_shape``), independently of the installed scipy's pickle layout,
and by default converted to dense arrays. ``numpy.core.*`` references are redirected to
``numpy._core`` on NumPy 2.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from avatarbench.errors import ModelFileError

_SPARSE_NAMES = {"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"}


class ChumpyStub:
    """Stand-in for any chumpy class: records the class name and the pickled state."""

    chumpy_class = "Ch"

    def __new__(cls, *args, **kwargs):  # pickle may call cls.__new__(cls, *args)
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.state: dict = {}

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            state = {**(state[0] or {}), **(state[1] or {})}
        self.state = dict(state) if isinstance(state, dict) else {"x": state}

    def to_numpy(self) -> np.ndarray:
        """Evaluate the recorded chumpy object (leaf ``Ch`` or a supported reordering)."""
        s = self.state
        name = self.chumpy_class
        if "x" in s and not isinstance(s.get("a"), ChumpyStub):
            return np.asarray(_resolve(s["x"]))
        if "a" in s:
            a = np.asarray(_resolve(s["a"]))
            if name == "Select":
                out = a.ravel()[np.asarray(s["idxs"])].copy()
                return out.reshape(s["preferred_shape"]) if "preferred_shape" in s else out
            if name == "Reshape":
                return a.reshape(s["newshape"])
            if name == "transpose":
                return np.ascontiguousarray(np.transpose(a, axes=s.get("axes")))
        raise ValueError(f"unsupported chumpy object chumpy.{name} (state keys: {sorted(s)})")


class SparseStub:
    """Stand-in for a pickled scipy sparse matrix; rebuilt by :meth:`to_scipy`."""

    sparse_class = "csc_matrix"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.state: dict = {}

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        self.state = dict(state)

    def to_scipy(self):
        import scipy.sparse as sp

        s = self.state
        shape = tuple(int(n) for n in (s.get("_shape") or s.get("shape")))
        kind = self.sparse_class[:3]
        if kind == "coo":
            if "coords" in s:  # scipy >= 1.13
                row, col = s["coords"][-2], s["coords"][-1]
            else:
                row, col = s.get("row", s.get("_row")), s.get("col", s.get("_col"))
            return sp.coo_matrix((np.asarray(s["data"]), (np.asarray(row), np.asarray(col))), shape=shape)
        ctor = sp.csc_matrix if kind == "csc" else sp.csr_matrix
        return ctor((np.asarray(s["data"]), np.asarray(s["indices"]), np.asarray(s["indptr"])), shape=shape)


class LegacyUnpickler(pickle.Unpickler):
    """Unpickler that never imports chumpy and rebuilds scipy sparse matrices itself."""

    def find_class(self, module: str, name: str):
        if module == "chumpy" or module.startswith("chumpy."):
            return type(name, (ChumpyStub,), {"chumpy_class": name, "__module__": __name__})
        if module.startswith("scipy.sparse") and name in _SPARSE_NAMES:
            return type(name, (SparseStub,), {"sparse_class": name, "__module__": __name__})
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = "numpy._core" + module[len("numpy.core"):]
        return super().find_class(module, name)


def _resolve(obj: Any, densify: bool = True) -> Any:
    """Recursively replace stubs by NumPy arrays (sparse ones dense when ``densify``)."""
    if isinstance(obj, ChumpyStub):
        return obj.to_numpy()
    if isinstance(obj, SparseStub):
        m = obj.to_scipy()
        return m.toarray() if densify else m
    if densify and hasattr(obj, "toarray") and type(obj).__module__.startswith("scipy.sparse"):
        return obj.toarray()
    if isinstance(obj, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): _resolve(v, densify) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v, densify) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v, densify) for v in obj)
    return obj


def load_legacy_pickle(path: str | Path, *, densify: bool = True) -> Any:
    """Load a (possibly Python 2, chumpy-containing) model pickle as plain Python/NumPy objects.

    Args:
        path: the ``.pkl`` file.
        densify: convert scipy sparse matrices to dense ``np.ndarray`` (default) instead of
            returning ``scipy.sparse.csc_matrix``/``csr_matrix``/``coo_matrix``.

    Returns:
        The unpickled object with every chumpy object replaced by its ``np.ndarray`` value.

    Raises:
        ModelFileError: the file is missing or is not a readable pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        with open(path, "rb") as f:
            obj = LegacyUnpickler(f, encoding="latin1").load()
        return _resolve(obj, densify)
    except ModelFileError:
        raise
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad model file
        raise ModelFileError(f"{path}: cannot be read as a model pickle ({type(e).__name__}: {e})") from e
