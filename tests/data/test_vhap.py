"""The VHAP loader on hand-made tiny folders (tests/data/fixtures_vhap.py)."""

from __future__ import annotations

import json
import pickle
import sys
import types
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_vhap as fx  # noqa: E402

from avatarbench.data import detect_format, inspect_subject, load_subject, load_vhap  # noqa: E402
from avatarbench.data.flame_params import LazyParams, read_flame_params, stack_flame_params  # noqa: E402
from avatarbench.errors import ConfigError, DataError  # noqa: E402

torch.set_num_threads(1)
CAMS = sorted(fx.YAWS)


@pytest.fixture(scope="module")
def union(tmp_path_factory):
    return fx.write_union(tmp_path_factory.mktemp("vhap"), gt_mesh=True,
                          subject_json=None)


@pytest.fixture(scope="module")
def subject(union):
    return load_vhap(union.root)


@pytest.fixture
def fresh(tmp_path):
    """A union folder the test may break."""
    return fx.write_union(tmp_path / "data", num_timesteps=1, train=("EMO-1",), test=("EXP-4",))


# ------------------------------------------------------------------ structure and splits
def test_union_splits_membership(union, subject):
    assert subject.name == "077" and subject.kind == "head" and subject.body_model == "flame"
    train, nv, sr = (subject.frames(s) for s in ("train", "novel_view", "self_reenact"))
    # train: the training sequences, every camera but 8; novel_view: camera 8 on the same timesteps
    assert {f.camera.id for f in train} == set(CAMS) - {8}
    assert {f.camera.id for f in nv} == {8}
    assert {f.camera.id for f in sr} == set(CAMS)
    train_ts = [t for s in union.train_seqs for t in s.global_timesteps]
    test_ts = [t for s in union.test_seqs for t in s.global_timesteps]
    assert subject.timesteps("train") == subject.timesteps("novel_view") == train_ts == [0, 1, 2, 3]
    assert subject.timesteps("self_reenact") == test_ts == [4, 5]
    assert len(train) == 4 * 6 and len(nv) == 4 and len(sr) == 2 * 7
    assert subject.sequences("train") == ["EMO-1", "EXP-2"] and subject.sequences("self_reenact") == ["EXP-4"]
    assert subject.meta["test_sequences"] == ["EXP-4"] and subject.meta["trainval_sequences"] == ["EMO-1", "EXP-2"]
    assert subject.meta["train_cameras"] == [5, 6, 7, 9, 10, 11] and subject.meta["novel_view_cameras"] == [8]
    assert subject.meta["union"] is True and subject.meta["format"] == "vhap"
    keys = [f.key for s in subject.split_names for f in subject.frames(s)]
    assert len(keys) == len(set(keys))


def test_union_relative_paths_resolve_into_sibling_sequences(union, subject):
    f = next(f for f in subject.frames("self_reenact") if f.timestep == 5 and f.camera.id == 11)
    assert f.sequence == "EXP-4"
    expected = union.test_seqs[0].folder / "images" / "00001_11.png"
    assert f.image_path.resolve() == expected.resolve()
    assert f.mask_path.resolve() == (union.test_seqs[0].folder / "fg_masks" / "00001_11.png").resolve()
    assert Path(f.driving.source).resolve() == (union.test_seqs[0].folder / "flame_param" / "00001.npz").resolve()
    assert ".." in f.image_path.parts  # kept relative to the union folder, like VHAP/GA


def test_cameras_per_index_and_per_sequence(subject):
    assert sorted(subject.cameras) == CAMS
    assert subject.meta["cameras_vary_by_sequence"] is True
    # Subject.cameras = first occurrence (first training sequence); frames keep their own cameras
    f_emo = next(f for f in subject.frames("train") if f.sequence == "EMO-1" and f.camera.id == 5)
    f_exp = next(f for f in subject.frames("train") if f.sequence == "EXP-2" and f.camera.id == 5)
    assert subject.cameras[5] is f_emo.camera and f_exp.camera != f_emo.camera
    d = (f_exp.camera.center - f_emo.camera.center).numpy()
    np.testing.assert_allclose(d, fx.seq_shift(1) - fx.seq_shift(0), atol=1e-12)
    assert f_emo.camera.name == "222200005"


def test_flame_params_lazy_cached_and_validated(subject):
    frames_t2 = [f for f in subject.frames("train") if f.timestep == 2]
    d = frames_t2[0].driving
    assert isinstance(d, LazyParams) and all(f.driving is d for f in frames_t2)
    assert not d.loaded
    expect = fx.flame_arrays(1, 2)
    assert d["shape"].shape == (300,) and d["expr"].shape == (100,) and d["eyes_pose"].shape == (6,)
    assert d["static_offset"].shape == (fx.NUM_VERTS, 3) and d["expr"].dtype == np.float32
    for k, v in expect.items():
        np.testing.assert_array_equal(d[k], v.reshape(d[k].shape))
    assert d.loaded and "dynamic_offset" not in d
    assert subject.driving(2) is d
    t = frames_t2[0].driving_tensors()
    assert t["expr"].shape == (1, 100) and t["static_offset"].shape == (1, fx.NUM_VERTS, 3)
    assert pickle.loads(pickle.dumps(d))["expr"][0] == pytest.approx(0.01 * 2 + 1)


def test_canonical_gt_mesh_and_meta(subject):
    c = subject.canonical
    np.testing.assert_array_equal(c["jaw_pose"], np.float32([0.3, 0.0, 0.0]))
    assert c["shape"][0] == 1.0 and c["expr"].shape == (100,) and not c["expr"].any()
    v = subject.gt_mesh(3)
    assert v.shape == (fx.NUM_VERTS, 3) and v.dtype == np.float32 and (v == 3.0).all()
    assert subject.gt_mesh(99) is None
    np.testing.assert_array_equal(subject.gt_mesh_faces, [[0, 1, 2], [2, 3, 4]])
    assert subject.meta["synthetic"] is False and subject.body_model_path is None
    assert subject.meta["sequences"]["EXP-4"] == {"folder": "077_EXP-4_v16_fixture", "role": "test",
                                                  "num_timesteps": 2, "timestep_range": [4, 5]}


def test_stack_flame_params(subject):
    st = stack_flame_params([subject.driving(t) for t in (0, 1, 3)])
    assert st["expr"].shape == (3, 100) and st["static_offset"].shape == (3, fx.NUM_VERTS, 3)
    torch.testing.assert_close(st["translation"][:, 2], torch.tensor([1.0, 1.01, 1.03]))
    assert st["expr"].dtype == torch.float32
    only = stack_flame_params([subject.driving(0)], keys=["jaw_pose"])
    assert list(only) == ["jaw_pose"] and only["jaw_pose"].shape == (1, 3)
    with pytest.raises(ValueError, match="dynamic_offset"):
        stack_flame_params([subject.driving(0)], keys=["dynamic_offset"])


# ------------------------------------------------------------------ images
def test_image_lazy_load_white_composite(subject):
    f = next(f for f in subject.frames("novel_view") if f.timestep == 1)
    img = f.image()
    assert img.shape == (fx.H, fx.W, 3) and img.dtype == torch.float32
    col = torch.tensor(fx.image_colour(8, 1), dtype=torch.float32) / 255
    r, c = fx.INNER
    torch.testing.assert_close(img[r, c], col.expand(8, 6, 3))
    outside = torch.ones(fx.H, fx.W, dtype=torch.bool)
    outside[r, c] = False
    assert torch.all(img[outside] == 1.0)  # alpha 0 -> white background
    m = f.mask()
    assert m.shape == (fx.H, fx.W, 1) and float(m[r, c].min()) == 1.0 and float(m[outside].max()) == 0.0


def test_image_resize_with_scale(union):
    s = load_vhap(union.root, scale=0.5)
    f = next(f for f in s.frames("train") if f.timestep == 0 and f.camera.id == 6)
    img = f.image()
    assert img.shape == (8, 6, 3) and (f.camera.width, f.camera.height) == (6, 8)
    # 2x2 box filter of the white-composited native image (rows 4..11, cols 3..8 opaque)
    native = np.ones((fx.H, fx.W, 3), np.float32)
    native[fx.INNER] = np.array(fx.image_colour(6, 0), np.float32) / 255
    expected = native.reshape(8, 2, 6, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(img.numpy(), expected, atol=1e-6)
    assert f.mask().shape == (8, 6, 1)
    assert s.meta["scale"] == 0.5 and s.meta["native_size"] == [fx.W, fx.H]


# ------------------------------------------------------------------ other layouts
def test_single_sequence_folder(tmp_path):
    info = fx.write_sequence(tmp_path, "104", "FREE", code=2, num_timesteps=4)
    s = load_vhap(info.folder)
    assert s.name == "104" and s.sequences() == ["FREE"] and s.meta["union"] is False
    # VHAP split_json: ceil(0.7 * 4) = 3 timesteps for train/val, 1 for test
    assert s.timesteps("train") == [0, 1, 2] and s.timesteps("self_reenact") == [3]
    assert s.meta["test_sequences"] == ["FREE"]
    assert s.driving(3)["expr"][0] == pytest.approx(0.03 + 2)


def test_top_level_intrinsics_fallback_and_angle_fallback(fresh):
    def strip(doc):
        for fr in doc["frames"]:
            for k in ("cx", "cy", "fl_x", "fl_y", "w", "h"):
                fr.pop(k)
    fx.edit_json(fresh.root / "transforms_test.json", strip)
    s = load_vhap(fresh.root)
    fx_, fy_, cx, cy = fx.intrinsics(11)  # the fixture's top-level copies are the last camera's
    for f in s.frames("self_reenact"):
        assert (f.camera.fx, f.camera.fy, f.camera.cx, f.camera.cy) == pytest.approx((fx_, fy_, cx, cy))

    def only_angle(doc):
        for k in ("fl_x", "fl_y", "cx", "cy"):
            doc.pop(k)
    fx.edit_json(fresh.root / "transforms_test.json", only_angle)
    # now only the per-frame camera_angle_x/y are left: fl = w / (2 tan(angle / 2)), centred principal point
    for f in load_vhap(fresh.root).frames("self_reenact"):
        fx_, fy_, _, _ = fx.intrinsics(f.camera.id)
        assert f.camera.fx == pytest.approx(fx_) and f.camera.fy == pytest.approx(fy_)
        assert (f.camera.cx, f.camera.cy) == (fx.W / 2, fx.H / 2)


def test_subject_json_synthetic_extras(tmp_path):
    u = fx.write_union(tmp_path, subject="synth_head_z", num_timesteps=1, train=("EMO-1",), test=("EXP-4",),
                       subject_json={"name": "synth_head_z", "synthetic": True, "body_model_path": "model/flame.npz"})
    (u.root / "model").mkdir()
    (u.root / "model" / "flame.npz").write_bytes(b"")
    s = load_vhap(u.root)
    assert s.name == "synth_head_z" and s.meta["synthetic"] is True and s.meta["dataset"] == "synthetic"
    assert s.body_model_path == u.root / "model" / "flame.npz"
    assert s.sequences() == ["EMO-1", "EXP-4"]  # subject prefix with underscores stripped correctly
    (u.root / "model" / "flame.npz").unlink()
    with pytest.raises(DataError, match="body_model_path"):
        load_vhap(u.root)


def test_summary_and_inspect_are_json(union):
    d = inspect_subject(str(union.root))
    json.dumps(d)
    assert d["format"] == "vhap" and d["num_cameras"] == 7 and d["image_size"] == [fx.W, fx.H]
    assert d["splits"]["train"]["timesteps"] == 4 and d["splits"]["self_reenact"]["timesteps"] == 2
    assert d["splits"]["novel_view"]["cameras"] == [8]
    cam = d["cameras"]["8"]
    fx_, fy_, cx, cy = fx.intrinsics(8)
    assert cam["K"] == [[fx_, 0, cx], [0, fy_, cy], [0, 0, 1]]
    np.testing.assert_allclose(np.array(cam["world_to_cam"]) @ np.append(fx.seq_shift(0), 1.0), [0, 0, 1, 1],
                               atol=1e-12)
    assert "gt_mesh_faces" not in d["meta"]


# ------------------------------------------------------------------ registry
def test_detect_format_and_dispatch(tmp_path, union, monkeypatch):
    assert detect_format(union.root) == "vhap"
    for fmt, marker in (("avatarrex", "calibration_full.json"), ("thuman4", "calibration.json"),
                        ("actorshq", "calibration.csv"), ("actorshq", "4x/calibration.csv")):
        d = tmp_path / fmt / marker.replace("/", "_")
        (d / marker).parent.mkdir(parents=True, exist_ok=True)
        (d / marker).write_text("")
        assert detect_format(d) == fmt
    calls = []
    fake = types.ModuleType("avatarbench.data.thuman4")
    fake.load_thuman4 = lambda p, **kw: calls.append((Path(p), kw)) or load_vhap(union.root)
    monkeypatch.setitem(sys.modules, "avatarbench.data.thuman4", fake)
    load_subject(tmp_path / "thuman4" / "calibration.json", scale=0.5)
    assert calls == [(tmp_path / "thuman4" / "calibration.json", {"scale": 0.5})]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as e:
        load_subject(empty)
    msg = str(e.value)
    assert str(empty) in msg and "transforms_train.json" in msg and "calibration.csv" in msg and "\n" not in msg
    with pytest.raises(DataError, match="folder not found"):
        load_subject(tmp_path / "nope")


def test_synthetic_names_dispatch(union, monkeypatch):
    calls = []
    fake = types.ModuleType("avatarbench.data.synth.head")

    def ensure_synthetic_head(name="synth_head_a", preset="smoke"):
        calls.append((name, preset))
        return union.root
    fake.ensure_synthetic_head = ensure_synthetic_head
    monkeypatch.setitem(sys.modules, "avatarbench.data.synth.head", fake)
    assert load_subject("synth_head").name == "077"
    load_subject("synth_head_b", preset="paper", scale=0.5)
    assert calls == [("synth_head_a", "smoke"), ("synth_head_b", "paper")]


def test_load_subject_vhap_with_kwargs(union):
    s = load_subject(union.root, scale=0.5)
    assert s.cameras[8].width == 6 and s.meta["format"] == "vhap"
    with pytest.raises(ConfigError):
        load_vhap(union.root, splits="nerf")
    with pytest.raises(ConfigError):
        load_vhap(union.root, scale=0)


# ------------------------------------------------------------------ bad input: one-line DataError
def _one_line(err: DataError, *needles: str) -> str:
    msg = str(err)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    assert err.__cause__ is None and err.__suppress_context__ or err.__context__ is None
    return msg


def test_missing_transforms_json(fresh):
    (fresh.root / "transforms_val.json").unlink()
    with pytest.raises(DataError) as e:
        load_vhap(fresh.root)
    _one_line(e.value, "transforms_val.json", "file not found")


def test_invalid_json(fresh):
    (fresh.root / "transforms_train.json").write_text('{"frames": [ {"camera_index": 1,, } ]}')
    with pytest.raises(DataError) as e:
        load_vhap(fresh.root)
    _one_line(e.value, "transforms_train.json", "invalid JSON", "line 1")


@pytest.mark.parametrize("key", ["transform_matrix", "file_path", "timestep_index", "camera_index",
                                 "flame_param_path", "w"])
def test_missing_frame_key_names_key_and_frame(fresh, key):
    def drop(doc):
        doc["frames"][2].pop(key)
        doc.pop(key, None)  # also the top-level copy of intrinsics
    fx.edit_json(fresh.root / "transforms_train.json", drop)
    with pytest.raises(DataError) as e:
        load_vhap(fresh.root)
    _one_line(e.value, "transforms_train.json", "frame 2", f"'{key}'")


def test_bad_transform_matrix(fresh):
    def bad(doc):
        doc["frames"][1]["transform_matrix"] = [[1, 0, 0], [0, 1, 0]]
    fx.edit_json(fresh.root / "transforms_test.json", bad)
    with pytest.raises(DataError) as e:
        load_vhap(fresh.root)
    _one_line(e.value, "transforms_test.json", "frame 1", "transform_matrix", "(4, 4)")


def test_missing_flame_param_file(fresh):
    p = fresh.test_seqs[0].folder / "flame_param" / "00000.npz"
    p.unlink()
    with pytest.raises(DataError) as e:
        load_vhap(fresh.root)
    _one_line(e.value, str(p.name), "FLAME parameter file not found", "flame_param_path")


@pytest.mark.parametrize("key,bad,got,want", [
    ("expr", np.zeros((1, 50)), "(1, 50)", "(1, 100)"),
    ("eyes_pose", np.zeros((2, 6)), "(2, 6)", "(1, 6)"),
    ("shape", np.zeros((1, 100)), "(1, 100)", "(300,)"),
    ("static_offset", np.zeros((1, 7, 2)), "(1, 7, 2)", "(1, V, 3)"),
])
def test_wrong_npz_shape_names_file_key_got_expected(fresh, key, bad, got, want):
    # the first training timestep is validated at load time ...
    p = fresh.train_seqs[0].folder / "flame_param" / "00000.npz"
    arrays = fx.flame_arrays(1, 0)
    arrays[key] = bad
    np.savez(p, **arrays)
    with pytest.raises(DataError) as e:
        load_vhap(fresh.root)
    _one_line(e.value, f"{p.parent.parent.name}/flame_param/{p.name}", f"'{key}'", got, want)


def test_wrong_npz_shape_in_lazy_timestep(fresh):
    # ... the others when first accessed
    p = fresh.test_seqs[0].folder / "flame_param" / "00000.npz"
    arrays = fx.flame_arrays(1, 1)
    arrays["jaw_pose"] = np.zeros((1, 4))
    np.savez(p, **arrays)
    s = load_vhap(fresh.root)
    with pytest.raises(DataError) as e:
        s.frames("self_reenact")[0].driving["expr"]
    _one_line(e.value, f"{p.parent.parent.name}/flame_param/{p.name}", "'jaw_pose'", "(1, 4)", "(1, 3)")


def test_npz_missing_key_and_corrupt_npz(fresh, tmp_path):
    p = tmp_path / "x.npz"
    arrays = fx.flame_arrays(1, 0)
    arrays.pop("neck_pose")
    np.savez(p, **arrays)
    with pytest.raises(DataError) as e:
        read_flame_params(p)
    _one_line(e.value, str(p), "missing key 'neck_pose'")
    p.write_bytes(b"not a zip file")
    with pytest.raises(DataError) as e:
        read_flame_params(p)
    _one_line(e.value, str(p), "unreadable npz")
    # (1, 300) shape and unbatched expr are accepted
    arrays = fx.flame_arrays(1, 0)
    arrays["shape"] = arrays["shape"][None]
    arrays["expr"] = arrays["expr"][0]
    np.savez(p, **arrays)
    assert read_flame_params(p)["shape"].shape == (300,)


def test_missing_image_is_lazy(fresh):
    img = fresh.train_seqs[0].folder / "images" / "00000_05.png"
    img.unlink()
    s = load_vhap(fresh.root)  # images are not touched at load time
    f = next(f for f in s.frames("train") if f.camera.id == 5)
    with pytest.raises(DataError) as e:
        f.image()
    _one_line(e.value, str(img.name), "not found")
    with pytest.raises(DataError) as e:
        load_vhap(fresh.root, verify_images=True)
    _one_line(e.value, str(img.name), "image file not found")


def test_corrupt_image(fresh):
    img = fresh.train_seqs[0].folder / "images" / "00000_06.png"
    img.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    f = next(f for f in load_vhap(fresh.root).frames("train") if f.camera.id == 6)
    with pytest.raises(DataError) as e:
        f.image()
    _one_line(e.value, str(img.name), "unreadable image")


def test_image_size_must_match_json(fresh):
    img = fresh.train_seqs[0].folder / "images" / "00000_07.png"
    iio.imwrite(img, np.zeros((fx.H, fx.W + 2, 3), np.uint8))
    f = next(f for f in load_vhap(fresh.root, scale=0.5).frames("train") if f.camera.id == 7)
    with pytest.raises(DataError) as e:
        f.image()
    _one_line(e.value, str(img.name), f"{fx.W + 2}x{fx.H}", f"{fx.W}x{fx.H}")


def test_timestep_with_two_flame_files_or_non_rigid_pose(fresh):
    def two_files(doc):
        doc["frames"][3]["flame_param_path"] = doc["frames"][3]["flame_param_path"].replace("00000", "00001")
    fx.edit_json(fresh.root / "transforms_train.json", two_files)
    with pytest.raises(DataError) as e:
        load_vhap(fresh.root)
    _one_line(e.value, "transforms_train.json", "frame 3", "flame_param_path", "one FLAME file per timestep_index")

    def sheared(doc):
        doc["frames"][3]["flame_param_path"] = doc["frames"][0]["flame_param_path"]
        doc["frames"][4]["transform_matrix"][0][1] = 0.5
    fx.edit_json(fresh.root / "transforms_train.json", sheared)
    with pytest.raises(DataError) as e:
        load_vhap(fresh.root)
    _one_line(e.value, "transforms_train.json", "frame 4", "not a rigid transform")


def test_unknown_timestep(subject):
    with pytest.raises(KeyError):
        subject.driving(1234)
