"""Paths stay inside the dataset: file_path / fg_mask_path / flame_param_path leaving the dataset
folder are refused (VHAP unions may use exactly their sibling folders), a camera_index outside
the file's camera list is an error, and body-dataset camera names cannot climb out either."""

from __future__ import annotations

import json
import shutil

import pytest

from avatarbench.data.vhap import load_vhap
from avatarbench.errors import DataError
from tests.data.fixtures_vhap import write_union
from tests.reliability.helpers import cli, error_lines


@pytest.fixture
def union(tmp_path):
    return write_union(tmp_path / "data", num_timesteps=2)


def _edit_first_train_frame(root, **changes):
    p = root / "transforms_train.json"
    doc = json.loads(p.read_text())
    doc["frames"][0].update(changes)
    p.write_text(json.dumps(doc))
    return p


def test_legitimate_union_sibling_paths_load(union):
    subject = load_vhap(union.root)
    f = subject.frames("train")[0]
    assert f.image_path.resolve().is_file()
    assert f.image_path.resolve().parent.parent.parent == union.root.parent.resolve()


@pytest.mark.parametrize("key,value", [
    ("file_path", "../../etc/passwd"),
    ("file_path", "/etc/passwd"),
    ("fg_mask_path", "images/../../../outside.png"),
    ("flame_param_path", "../SEQ/../../outside/00000.npz"),
    ("file_path", "..\\..\\windows\\x.png"),
    ("flame_param_path", "../.."),
])
def test_paths_outside_the_dataset_are_refused(union, key, value, tmp_path):
    # put a real file at the escaping target so that only the path rule can refuse it
    (tmp_path / "outside").mkdir(exist_ok=True)
    shutil.copy(union.sequences[0].folder / "flame_param" / "00000.npz", tmp_path / "outside" / "00000.npz")
    jpath = _edit_first_train_frame(union.root, **{key: value.replace("SEQ", union.sequences[0].folder.name)})
    with pytest.raises(DataError) as e:
        load_vhap(union.root)
    msg = str(e.value)
    assert msg.startswith(str(jpath)) and "frame 0" in msg and key in msg and "\n" not in msg
    assert "outside the dataset" in msg or "absolute path" in msg


def test_escaping_path_is_one_line_in_a_real_process(union):
    _edit_first_train_frame(union.root, file_path=f"../{union.sequences[0].folder.name}/../../../etc/passwd")
    proc = cli("data", "inspect", union.root)
    errs = error_lines(proc)
    assert proc.returncode == 2 and len(errs) == 1 and "transforms_train.json" in errs[0] and "file_path" in errs[0]
    assert "Traceback" not in proc.stderr


def test_body_model_path_outside_is_refused(union):
    (union.root / "avatarbench_subject.json").write_text(json.dumps({"body_model_path": "../../flame.pkl"}))
    with pytest.raises(DataError, match=r"avatarbench_subject.json: key 'body_model_path' is '../../flame.pkl'"):
        load_vhap(union.root)


def test_camera_index_outside_the_camera_list_is_an_error(union):
    jpath = _edit_first_train_frame(union.root, camera_index=999)
    with pytest.raises(DataError) as e:
        load_vhap(union.root)
    assert str(e.value).startswith(str(jpath)) and "camera_index" in str(e.value) and "999" in str(e.value)


def test_body_dataset_camera_name_cannot_climb_out(tmp_path):
    from avatarbench.data.avatarrex import load_avatarrex
    from tests.data.test_body_loaders import make_avatarrex

    root = make_avatarrex(tmp_path / "rex")
    calib = json.loads((root / "calibration_full.json").read_text())
    calib["../../evil"] = calib.pop(next(iter(calib)))
    (root / "calibration_full.json").write_text(json.dumps(calib))
    with pytest.raises(DataError, match=r"calibration_full.json: camera name '../../evil' is not a plain folder"):
        load_avatarrex(root)
