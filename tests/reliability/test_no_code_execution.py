"""Loading a file never runs code: crafted pickles and checkpoints in every place a user can
point the suite at are refused with one line naming the file and the global; the payload
(which would create a marker file) never runs."""

from __future__ import annotations

import io
import pickle
import shutil
import subprocess

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from avatarbench.bodymodels.pickle_compat import load_legacy_pickle
from avatarbench.engine.checkpoint import (CheckpointRefused, checkpoint_bytes, decode_payload, list_checkpoints,
                                           load_checkpoint)
from avatarbench.errors import ModelFileError
from tests.reliability.helpers import _Payload, cli, error_lines, evil_pickle, py, tiny_run_args


@pytest.mark.parametrize("via,protocol,expect", [("system", 2, "posix.system"), ("system", 4, "posix.system"),
                                                 ("exec", 0, "builtins.exec"), ("exec", 5, "builtins.exec")])
def test_flame_env_pickle_refused_in_a_real_process(tmp_path, via, protocol, expect):
    marker = tmp_path / "pwned"
    evil = evil_pickle(tmp_path / "flame2023.pkl", marker, via=via, protocol=protocol)
    proc = py("from avatarbench.bodymodels.flame import load_flame\n"
              "from avatarbench.errors import ModelFileError\n"
              "try:\n    load_flame(None)\nexcept ModelFileError as e:\n    print('ERR', e)\n",
              env={"AVATARBENCH_FLAME_MODEL": str(evil)})
    assert not marker.exists(), "the pickle payload ran"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ERR")]
    assert len(lines) == 1, proc.stdout + proc.stderr
    # exec pickled under protocol 0-2 is named __builtin__ or builtins depending on the writer
    assert str(evil) in lines[0] and expect.split(".")[1] in lines[0] and "refused" in lines[0]


def test_flame_masks_beside_a_valid_model_refused(tmp_path):
    from avatarbench.bodymodels.flame_synthetic import MASKS_FILENAME, write_synthetic_flame

    model = write_synthetic_flame(tmp_path / "flame")
    marker = tmp_path / "pwned"
    evil_pickle(model.parent / MASKS_FILENAME, marker)
    proc = py("from avatarbench.bodymodels.flame import load_flame\nload_flame(None)\n",
              env={"AVATARBENCH_FLAME_MODEL": str(model)})
    assert not marker.exists()
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert MASKS_FILENAME in last and "posix.system" in last


def test_smplx_env_pickle_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = evil_pickle(tmp_path / "SMPLX_NEUTRAL.pkl", marker)
    proc = py("from avatarbench.bodymodels.smplx import load_smplx\nload_smplx(None)\n",
              env={"AVATARBENCH_SMPLX_MODEL": str(evil)})
    assert not marker.exists()
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and str(evil) in last and "posix.system" in last


def test_dataset_body_model_path_refused_by_avatarbench_run(tmp_path):
    """A shared dataset whose avatarbench_subject.json points at a crafted FLAME pickle."""
    from tests.data.fixtures_vhap import write_union

    union = write_union(tmp_path / "data", subject_json={"name": "evil", "body_model_path": "flame/model.pkl"})
    marker = tmp_path / "pwned"
    evil = evil_pickle(union.root / "flame" / "model.pkl", marker)
    proc = cli("run", "-m", "flame_gaussians", "--data", union.root, "--output", tmp_path / "out", "--quiet",
               "--set", "engine.num_threads=1")
    assert not marker.exists()
    assert proc.returncode == 2, proc.stderr
    errs = error_lines(proc)
    assert len(errs) == 1 and str(evil) in errs[0] and "posix.system" in errs[0]
    assert "Traceback" not in proc.stderr


def test_allow_list_accepts_what_model_pickles_hold(tmp_path):
    """NumPy arrays/scalars of every dtype family, scipy sparse, sets and tuples, protocols 0-5."""
    data = {"a": np.arange(6.0).reshape(2, 3), "u": np.arange(3, dtype=np.uint32), "b": np.array([True, False]),
            "s": np.float64(3.5), "i": np.int64(-2), "j": sp.csc_matrix(np.eye(3)), "set": {1, 2},
            "t": (1, "x", b"raw"), "names": np.array(["ab", "c"]), "c": complex(1, 2)}
    for proto in range(6):
        p = tmp_path / f"p{proto}.pkl"
        p.write_bytes(pickle.dumps(data, protocol=proto))
        out = load_legacy_pickle(p)
        np.testing.assert_array_equal(out["a"], data["a"])
        assert out["u"].dtype == np.uint32 and out["s"] == 3.5 and out["i"] == -2 and out["set"] == {1, 2}
        np.testing.assert_array_equal(out["j"], np.eye(3))
        assert out["t"] == (1, "x", b"raw") and out["names"].tolist() == ["ab", "c"] and out["c"] == 1 + 2j


@pytest.mark.parametrize("obj_factory", [
    lambda: np.array([_Payload("/nonexistent/x")], dtype=object),  # object array holding a payload
    lambda: {"posedirs": subprocess.Popen},  # a bare class reference, never called
])
def test_allow_list_refuses_nested_globals(tmp_path, obj_factory):
    p = tmp_path / "m.pkl"
    p.write_bytes(pickle.dumps(obj_factory(), protocol=2))
    with pytest.raises(ModelFileError, match=r"m\.pkl: refused to load: the pickle references the global"):
        load_legacy_pickle(p)


# ----------------------------------------------------------------------------- checkpoints
def _malicious_checkpoint(path, marker):
    torch.save({"step": 4, "method": {"x": _Payload(marker)}}, path)


def test_checkpoint_loader_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    ck = tmp_path / "step_00000004.pt"
    _malicious_checkpoint(ck, marker)
    with pytest.raises(CheckpointRefused) as e:
        load_checkpoint(ck)
    assert not marker.exists()
    assert str(ck) in str(e.value) and "posix.system" in str(e.value) and "\n" not in str(e.value)


def test_checkpoint_codec_round_trips_non_tensor_state_bit_exactly():
    import random

    state = {"step": 3, "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                                "python": random.getstate()},
             "method": {"arr": np.arange(5, dtype=np.uint32), "scalar": np.float32(1.5), "tags": {"a", "b"},
                        "nested": [(1, 2.0, "s", None)], "t": torch.arange(3)}}
    raw = checkpoint_bytes(state)
    back = decode_payload(torch.load(io.BytesIO(raw), weights_only=True))
    assert back["rng"]["numpy"][0] == "MT19937"
    np.testing.assert_array_equal(back["rng"]["numpy"][1], state["rng"]["numpy"][1])
    assert back["rng"]["numpy"][1].dtype == state["rng"]["numpy"][1].dtype
    assert back["rng"]["python"] == state["rng"]["python"]
    assert back["method"]["arr"].dtype == np.uint32 and back["method"]["scalar"] == np.float32(1.5)
    assert isinstance(back["method"]["scalar"], np.float32) and back["method"]["tags"] == {"a", "b"}
    assert checkpoint_bytes(back) == raw  # re-saving gives the same bytes (avatarbench check relies on it)


def test_malicious_checkpoint_in_a_run_folder_refused_by_run_and_check(run_copy, tmp_path):
    marker = tmp_path / "pwned"
    newest = list_checkpoints(run_copy)[-1][1]
    _malicious_checkpoint(newest, marker)
    proc = cli("check", run_copy, "-s", "self_reenact")
    assert not marker.exists()
    errs = error_lines(proc)
    assert proc.returncode == 2 and len(errs) == 1 and str(newest) in errs[0], proc.stderr
    assert "posix.system" in errs[0]

    shutil.rmtree(run_copy / "eval")  # so that `run` has to load the model again
    proc = cli(*tiny_run_args(run_copy))
    assert not marker.exists()
    errs = error_lines(proc)
    assert proc.returncode == 2 and len(errs) == 1, proc.stderr
    assert str(newest) in errs[0] and "posix.system" in errs[0]
    assert newest.exists()  # refused, not silently moved aside


def test_audit_no_unsafe_loader_in_the_package():
    """Every torch.load is weights_only=True, every np.load allow_pickle=False, no pickle.load /
    yaml.load / eval / exec outside the allow-list unpickler."""
    import ast
    from pathlib import Path

    import avatarbench

    pkg = Path(avatarbench.__file__).parent
    methods_dir = pkg.parent / "methods"
    problems = []
    for f in sorted(list(pkg.rglob("*.py")) + list(methods_dir.rglob("*.py"))):
        tree = ast.parse(f.read_text(), filename=str(f))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            name = (f"{fn.value.id}.{fn.attr}" if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name)
                    else fn.id if isinstance(fn, ast.Name) else None)
            kw = {k.arg: k.value for k in node.keywords}
            const = {k: v.value for k, v in kw.items() if isinstance(v, ast.Constant)}
            where = f"{f.relative_to(pkg.parent)}:{node.lineno}"
            if name == "torch.load" and const.get("weights_only") is not True:
                problems.append(f"{where} torch.load without weights_only=True")
            if name == "np.load" and const.get("allow_pickle") is not False:
                problems.append(f"{where} np.load without allow_pickle=False")
            if name in ("pickle.load", "pickle.loads", "yaml.load", "yaml.unsafe_load", "eval", "exec",
                        "marshal.loads", "pd.read_pickle"):
                problems.append(f"{where} {name}")
            if name == "pickle.Unpickler" or (isinstance(fn, ast.Attribute) and fn.attr == "Unpickler"):
                if f.name != "pickle_compat.py":
                    problems.append(f"{where} an Unpickler outside the allow-list module")
    assert not problems, "\n".join(problems)
