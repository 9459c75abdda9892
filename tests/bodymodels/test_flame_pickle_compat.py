"""Loading chumpy-era model pickles without chumpy (fake chumpy classes exist only while writing)."""

from __future__ import annotations

import pickle
import sys
import types
from contextlib import contextmanager

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from avatarbench.bodymodels.pickle_compat import load_legacy_pickle
from avatarbench.errors import ModelFileError

torch.set_num_threads(1)


@contextmanager
def fake_chumpy():
    """Register a minimal fake ``chumpy`` package (Ch, reordering.transpose/Select) while pickling."""
    root = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")
    reo = types.ModuleType("chumpy.reordering")

    class Ch:  # like chumpy: the value lives in the state key 'x', next to bookkeeping fields
        def __init__(self, x):
            self.x = np.asarray(x)
            self._dirty_vars = set()
            self._itr = None
            self._depends_on_deps = {}

        def __getstate__(self):
            return dict(self.__dict__)

    class transpose:
        def __init__(self, a, axes):
            self.a, self.axes = a, axes
            self._dirty_vars = set()

    class Select:
        def __init__(self, a, idxs, preferred_shape):
            self.a, self.idxs, self.preferred_shape = a, idxs, preferred_shape

    for cls, mod in ((Ch, ch), (transpose, reo), (Select, reo)):
        cls.__module__ = mod.__name__
        cls.__qualname__ = cls.__name__
        setattr(mod, cls.__name__, cls)
    root.ch, root.reordering = ch, reo
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch", "chumpy.reordering")}
    sys.modules.update({"chumpy": root, "chumpy.ch": ch, "chumpy.reordering": reo})
    try:
        yield types.SimpleNamespace(Ch=Ch, transpose=transpose, Select=Select)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_chumpy_objects_and_sparse_load_without_chumpy(tmp_path):
    rng = np.random.default_rng(0)
    sd = rng.normal(size=(6, 3, 4))
    pd = rng.normal(size=(3, 6, 2))
    base = rng.normal(size=(4, 5))
    jr = sp.csc_matrix(np.array([[0.5, 0.5, 0, 0, 0, 0], [0, 0, 0, 0, 0.25, 0.75]]))
    with fake_chumpy() as ch:
        data = {
            "shapedirs": ch.Ch(sd),
            "posedirs": ch.transpose(a=ch.Ch(pd), axes=(1, 0, 2)),
            "picked": ch.Select(a=ch.Ch(base), idxs=np.array([1, 7, 19]), preferred_shape=(3,)),
            "J_regressor": jr,
            "f": np.array([[0, 1, 2]], dtype=np.uint32),
            "nested": [ch.Ch(np.arange(3.0))],
        }
        raw = pickle.dumps(data, protocol=2)
    assert "chumpy" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(raw)  # a plain unpickler needs chumpy
    path = tmp_path / "model.pkl"
    path.write_bytes(raw)

    out = load_legacy_pickle(path)
    assert "chumpy" not in sys.modules
    np.testing.assert_array_equal(out["shapedirs"], sd)
    np.testing.assert_array_equal(out["posedirs"], np.transpose(pd, (1, 0, 2)))
    np.testing.assert_array_equal(out["picked"], base.ravel()[[1, 7, 19]])
    assert isinstance(out["J_regressor"], np.ndarray)
    np.testing.assert_array_equal(out["J_regressor"], jr.toarray())
    np.testing.assert_array_equal(out["nested"][0], np.arange(3.0))
    assert out["f"].dtype == np.uint32

    kept = load_legacy_pickle(path, densify=False)
    assert sp.issparse(kept["J_regressor"])
    np.testing.assert_array_equal(kept["J_regressor"].toarray(), jr.toarray())


def test_coo_and_csr_matrices_are_rebuilt(tmp_path):
    m = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 3.0]])
    path = tmp_path / "s.pkl"
    with open(path, "wb") as f:
        pickle.dump({"coo": sp.coo_matrix(m), "csr": sp.csr_matrix(m)}, f, protocol=2)
    out = load_legacy_pickle(path)
    np.testing.assert_array_equal(out["coo"], m)
    np.testing.assert_array_equal(out["csr"], m)


def test_bad_and_missing_files_raise_model_file_error(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_legacy_pickle(tmp_path / "nope.pkl")
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"this is not a pickle")
    with pytest.raises(ModelFileError, match="bad.pkl: cannot be read"):
        load_legacy_pickle(bad)


def test_flame_format_with_chumpy_shapedirs_loads_like_plain(tmp_path):
    """The stand-in written the way the real FLAME pickles are (chumpy shapedirs) loads identically."""
    from avatarbench.bodymodels.flame import load_flame
    from avatarbench.bodymodels.flame_synthetic import MASKS_FILENAME, build_synthetic_flame, write_synthetic_flame

    plain = write_synthetic_flame(tmp_path / "plain")
    model, masks = build_synthetic_flame(0)
    (tmp_path / "chumpy").mkdir()
    with fake_chumpy() as ch:
        model["shapedirs"] = ch.Ch(model["shapedirs"])
        model["v_template"] = ch.Ch(model["v_template"])
        (tmp_path / "chumpy" / "generic_model.pkl").write_bytes(pickle.dumps(model, protocol=2))
    (tmp_path / "chumpy" / MASKS_FILENAME).write_bytes((plain.parent / MASKS_FILENAME).read_bytes())

    a = load_flame(plain).double()
    b = load_flame(tmp_path / "chumpy").double()  # folder -> generic_model.pkl
    assert b.source.name == "generic_model.pkl"
    expr = torch.zeros(1, 100, dtype=torch.float64)
    expr[0, 1] = 1.5
    torch.testing.assert_close(a(expr=expr, jaw_pose=torch.tensor([[0.2, 0, 0]])).verts,
                               b(expr=expr, jaw_pose=torch.tensor([[0.2, 0, 0]])).verts)
