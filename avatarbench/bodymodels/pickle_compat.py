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
and by default converted to dense arrays.

Loading never runs code from the file: the unpickler is an allow-list (NumPy array and scalar
reconstruction under ``numpy.core`` or ``numpy._core``, ``numpy.dtype``, scipy sparse and chumpy
classes as inert stubs, builtin containers, ``_codecs.encode`` for latin1 bytes,
``copyreg._reconstructor`` of the stubs). Any other global -- ``posix.system``,
``builtins.eval``, ``subprocess.Popen`` ... -- is refused before it is imported, with a
:class:`~avatarbench.errors.ModelFileError` naming the file and the global.
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


# What the official FLAME 2020/2023, FLAME_masks and SMPL/SMPL-X pickles reference (checked with
# pickletools on files written like them, Python 2 protocol 2 and Python 3 protocols 2-5), and
# nothing more. Each entry maps (module, name) to what the unpickler hands back.
_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                  "numpy._core.numeric")


def _safe_reconstruct(subtype, shape, dtype):
    """``numpy.core.multiarray._reconstruct`` limited to plain ``np.ndarray``."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"array reconstruction of {subtype!r} (only numpy.ndarray is allowed)")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _safe_scalar(dtype, data=None):
    """``numpy.core.multiarray.scalar``: a NumPy scalar from its dtype and raw bytes (no object dtype)."""
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise pickle.UnpicklingError("numpy object scalar (only numeric scalars are allowed)")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _safe_frombuffer(buf, dtype, shape, order):
    """``numpy.core.numeric._frombuffer`` (protocol-5 arrays), numeric dtypes only."""
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise pickle.UnpicklingError("numpy object array from buffer (only numeric arrays are allowed)")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy()


def _safe_codecs_encode(obj, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` as Python 3 uses it for ``bytes`` under protocol 2 (latin1 only)."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1") or not isinstance(obj, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} (only latin1 is allowed)")
    return obj.encode("latin1", errors)


def _safe_copyreg_reconstructor(cls, base, state):
    """``copy_reg._reconstructor`` (protocol 0/1 objects) for the stub classes only."""
    if not (isinstance(cls, type) and issubclass(cls, (ChumpyStub, SparseStub))) or base is not object:
        raise pickle.UnpicklingError(f"copyreg._reconstructor({cls!r}, {base!r}) (only chumpy/scipy stubs allowed)")
    return cls.__new__(cls)


_ALLOWED: dict[tuple[str, str], Any] = {}
for _m in _NUMPY_MODULES:
    _ALLOWED[(_m, "_reconstruct")] = _safe_reconstruct
    _ALLOWED[(_m, "scalar")] = _safe_scalar
    _ALLOWED[(_m, "_frombuffer")] = _safe_frombuffer
    _ALLOWED[(_m, "ndarray")] = np.ndarray
    _ALLOWED[(_m, "dtype")] = np.dtype
_ALLOWED.update({
    ("numpy", "bool_"): np.bool_,  # dtype classes referenced by numpy>=1.25 dtype pickles
    ("_codecs", "encode"): _safe_codecs_encode,
    ("copyreg", "_reconstructor"): _safe_copyreg_reconstructor,
    ("copy_reg", "_reconstructor"): _safe_copyreg_reconstructor,
    ("builtins", "object"): object, ("__builtin__", "object"): object,
})
for _b in ("set", "frozenset", "list", "dict", "tuple", "bytearray", "complex", "slice"):
    _ALLOWED[("builtins", _b)] = _ALLOWED[("__builtin__", _b)] = getattr(__import__("builtins"), _b)
for _n in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "UInt32DType", "UInt64DType",
           "Int16DType", "UInt16DType", "Int8DType", "UInt8DType", "BoolDType", "Float16DType"):
    if hasattr(np, "dtypes") and hasattr(np.dtypes, _n):
        _ALLOWED[("numpy.dtypes", _n)] = getattr(np.dtypes, _n)


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle referenced a global outside the allow-list (the payload is never imported)."""

    def __init__(self, module: str, name: str):
        self.qualname = f"{module}.{name}"
        super().__init__(self.qualname)


class LegacyUnpickler(pickle.Unpickler):
    """Allow-list unpickler: NumPy arrays/scalars, scipy sparse and chumpy stubs, builtin containers.

    ``find_class`` never imports anything: every global a model pickle may name is looked up in
    ``_ALLOWED`` (or is a chumpy / scipy sparse class, replaced by a stub); anything else raises
    :class:`ForbiddenGlobal` before the module is imported, so a crafted pickle cannot run code.
    """

    def find_class(self, module: str, name: str):
        if module == "chumpy" or module.startswith("chumpy."):
            return type(name, (ChumpyStub,), {"chumpy_class": name, "__module__": __name__})
        if (module == "scipy.sparse" or module.startswith("scipy.sparse.")) and name in _SPARSE_NAMES:
            return type(name, (SparseStub,), {"sparse_class": name, "__module__": __name__})
        found = _ALLOWED.get((module, name))
        if found is None:
            raise ForbiddenGlobal(module, name)
        return found


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
        ModelFileError: the file is missing, is not a readable pickle, or references a global
            outside the allow-list (the message names the file and the global; nothing is imported).
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
    except ForbiddenGlobal as e:
        raise ModelFileError(f"{path}: refused to load: the pickle references the global {e.qualname}, "
                             "which a FLAME/SMPL-X model file never holds (only NumPy arrays, scipy sparse "
                             "matrices, chumpy arrays and builtin containers are allowed)") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad model file
        raise ModelFileError(f"{path}: cannot be read as a model pickle ({type(e).__name__}: {e})") from e
