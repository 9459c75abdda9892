"""Tests of the synthetic VHAP-format head subjects (avatarbench.data.synth)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from avatarbench.data.synth.head import (
    COMPLETE_FILE,
    PRESETS,
    SynthPreset,
    ensure_synthetic_head,
    generate_synthetic_heads,
)
from avatarbench.data.synth.rig import FRONT_CAMERA, CaptureRig

FRAME_KEYS = {"timestep_index", "camera_index", "camera_id", "cx", "cy", "fl_x", "fl_y", "h", "w",
              "camera_angle_x", "camera_angle_y", "transform_matrix", "file_path", "fg_mask_path",
              "flame_param_path", "gt_mesh_path"}
TOP_KEYS = {"frames", "cx", "cy", "fl_x", "fl_y", "h", "w", "camera_angle_x", "camera_angle_y", "timestep_indices"}

#: a minimal dataset for determinism / caching tests: one training timestep + one FREE timestep each
MINI = SynthPreset("mini", 0.125, 2, {
    "synth_head_a": (("EMO-1", 1), ("FREE", 1)),
    "synth_head_b": (("EXP-2", 1), ("FREE", 1)),
})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """The ``tiny`` preset (1/8 scale; A: EMO-1, EXP-2, FREE x 2 timesteps; B: EMO-1, FREE)."""
    return generate_synthetic_heads(tmp_path_factory.mktemp("synth") / "tiny", "tiny", seed=0, workers=1)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _imread(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    return np.asarray(iio.imread(path))


# ------------------------------------------------------------------------------------------ rig
def test_rig_nersemble_like():
    cams = CaptureRig(scale=0.25).cameras()
    assert len(cams) == 16 and [c.id for c in cams] == list(range(16))
    assert all((c.width, c.height) == (138, 200) for c in cams)
    full = CaptureRig(scale=1.0).cameras()
    assert all((c.width, c.height) == (550, 802) for c in full)
    for c in full:
        assert 0.004 <= c.fy / c.fx - 1 <= 0.011  # fx != fy by 0.5-1 %
        off = abs(c.cx / c.width - 0.5), abs(c.cy / c.height - 0.5)
        assert 0.01 <= max(off) <= 0.045  # principal point off centre by a few %
        d = float(c.center.norm())
        assert 0.9 < d < 1.1  # ~1 m from the head
        # the optical axis passes within 2 cm of the head centre (origin)
        axis = c.cam_to_world[:3, 2]
        closest = c.center - (c.center @ axis) * axis
        assert float(closest.norm()) < 0.02
    yaw = [math.degrees(math.atan2(float(c.center[0]), float(c.center[2]))) for c in full]
    assert min(yaw) < -55 and max(yaw) > 55  # ~ +-60 deg arc
    front = full[FRONT_CAMERA]
    assert abs(yaw[FRONT_CAMERA]) < 1e-6 and abs(float(front.center[1])) < 1e-6  # camera 8: frontal
    # scaled intrinsics = the full ones resized (Camera.resized convention)
    np.testing.assert_allclose(cams[3].K.numpy(), full[3].resized(138, 200).K.numpy())


# ------------------------------------------------------------------------------------------ format
def test_layout_and_flame_npz_keys_shapes(tiny):
    from avatarbench.bodymodels.flame import load_flame

    ua = tiny["synth_head_a"]
    assert ua.name == "UNION_synthA_EMO1EXP2FREE_v16_DS8_whiteBg_synthetic"
    parent = ua.parent
    seqs = [parent / f"synthA_{s}_v16_DS8_whiteBg_synthetic" for s in ("EMO-1", "EXP-2", "FREE")]
    info = _json(ua / "avatarbench_subject.json")
    assert info["format"] == "vhap" and info["synthetic"] is True and info["body_model"] == "flame"
    assert info["name"] == "synth_head_a" and "seed" in info and "generator_version" in info
    model_path = (ua / info["body_model_path"]).resolve()
    assert model_path.is_file()
    V = load_flame(model_path).num_verts
    for seq in seqs:
        for f in ("transforms.json", "transforms_train.json", "transforms_val.json", "transforms_test.json",
                  "canonical_flame_param.npz", "gt_mesh/faces.npy"):
            assert (seq / f).is_file(), seq / f
        for ti in range(2):
            z = np.load(seq / "flame_param" / f"{ti:05d}.npz")
            shapes = {k: z[k].shape for k in z.files}
            assert shapes == {"translation": (1, 3), "rotation": (1, 3), "neck_pose": (1, 3), "jaw_pose": (1, 3),
                              "eyes_pose": (1, 6), "shape": (300,), "expr": (1, 100), "static_offset": (1, V, 3)}
            gt = np.load(seq / "gt_mesh" / f"{ti:05d}.npy")
            assert gt.shape == (V, 3) and gt.dtype == np.float32
        faces = np.load(seq / "gt_mesh" / "faces.npy")
        assert faces.dtype == np.int32 and faces.shape[1] == 3 and faces.max() == V - 1
        c = np.load(seq / "canonical_flame_param.npz")
        np.testing.assert_array_equal(c["jaw_pose"], [[0.3, 0, 0]])
        for k in ("translation", "rotation", "neck_pose", "eyes_pose", "expr"):
            assert not c[k].any(), k
        z0 = np.load(seq / "flame_param" / "00000.npz")
        np.testing.assert_array_equal(c["shape"], z0["shape"])
        np.testing.assert_array_equal(c["static_offset"], z0["static_offset"])
        assert np.abs(z0["static_offset"]).max() > 1e-5  # a real (non-zero) static offset
    assert (ua / "canonical_flame_param.npz").is_file()
    assert (ua / "sequences_trainval.txt").read_text().split() == [s.name for s in seqs[:2]]
    assert (ua / "sequences_test.txt").read_text().split() == [seqs[2].name]


def test_json_frames_images_and_union_paths(tiny):
    for union in tiny.values():
        for split in ("train", "val", "test"):
            db = _json(union / f"transforms_{split}.json")
            assert TOP_KEYS <= set(db), split
            assert db["frames"], split
            for fr in db["frames"]:
                assert FRAME_KEYS <= set(fr), set(fr) ^ FRAME_KEYS
                assert "timestep_index_original" not in fr and "timestep_id" not in fr  # dropped in unions
                for k in ("file_path", "fg_mask_path", "flame_param_path", "gt_mesh_path"):
                    assert fr[k].startswith("../") and (union / fr[k]).is_file(), fr[k]
                assert math.isclose(fr["camera_angle_x"], 2 * math.atan(fr["w"] / (2 * fr["fl_x"])))
                assert math.isclose(fr["camera_angle_y"], 2 * math.atan(fr["h"] / (2 * fr["fl_y"])))
                assert fr["fl_x"] != fr["fl_y"]
            for fr in db["frames"][:6]:
                img = _imread(union / fr["file_path"])
                mask = _imread(union / fr["fg_mask_path"])
                assert img.shape == (fr["h"], fr["w"], 3) and img.dtype == np.uint8
                assert mask.shape == (fr["h"], fr["w"]) and mask.dtype == np.uint8
                assert (img[mask == 0] == 255).all()  # white background
                assert mask.max() == 255 and 0.05 < (mask > 0).mean() < 0.8
    seq = tiny["synth_head_a"].parent / "synthA_EMO-1_v16_DS8_whiteBg_synthetic"
    db = _json(seq / "transforms.json")
    assert {"timestep_index_original", "timestep_id"} <= set(db["frames"][0])
    assert db["camera_indices"] == list(range(16)) and db["timestep_indices"] == [0, 1]
    assert (seq / db["frames"][0]["file_path"]).is_file()


def test_splits_like_vhap(tiny):
    ua = tiny["synth_head_a"]
    tr, va, te = (_json(ua / f"transforms_{s}.json") for s in ("train", "val", "test"))
    assert {f["camera_index"] for f in tr["frames"]} == set(range(16)) - {8}
    assert {f["camera_index"] for f in va["frames"]} == {8}
    assert {f["camera_index"] for f in te["frames"]} == set(range(16))
    assert tr["camera_indices"] == [c for c in range(16) if c != 8] and va["camera_indices"] == [8]
    # global renumbering: EMO-1 0-1, EXP-2 2-3 (train/val), FREE 4-5 (test)
    assert sorted({f["timestep_index"] for f in tr["frames"]}) == [0, 1, 2, 3] == tr["timestep_indices"]
    assert sorted({f["timestep_index"] for f in va["frames"]}) == [0, 1, 2, 3]
    assert sorted({f["timestep_index"] for f in te["frames"]}) == [4, 5] == te["timestep_indices"]
    assert all("_FREE_" in f["file_path"] for f in te["frames"])
    assert not any("_FREE_" in f["file_path"] for f in tr["frames"] + va["frames"])
    assert len(tr["frames"]) == 4 * 15 and len(va["frames"]) == 4 and len(te["frames"]) == 2 * 16
    # flame_param_path keeps the per-sequence local index
    f3 = next(f for f in tr["frames"] if f["timestep_index"] == 3)
    assert f3["flame_param_path"].endswith("_EXP-2_v16_DS8_whiteBg_synthetic/flame_param/00001.npz")
    # per-sequence split_json: first ceil(70 %) of the timesteps train/val, the rest test
    seq = ua.parent / "synthA_EMO-1_v16_DS8_whiteBg_synthetic"
    s_tr, s_va, s_te = (_json(seq / f"transforms_{s}.json") for s in ("train", "val", "test"))
    assert s_tr["timestep_indices"] == [0, 1] and s_te["timestep_indices"] == [] and not s_te["frames"]
    assert {f["camera_index"] for f in s_va["frames"]} == {8}
    # identity B: its own union with a training sequence and FREE as the held-out sequence
    ub = tiny["synth_head_b"]
    assert (ub / "sequences_test.txt").read_text().split() == ["synthB_FREE_v16_DS8_whiteBg_synthetic"]
    assert _json(ub / "avatarbench_subject.json")["drivers"] == {"synth_head_a": "../" + ua.name}


def _project_gl(fr: dict, pts: np.ndarray) -> np.ndarray:
    """Pixel (col, row) of world points via the JSON's OpenGL c2w + full intrinsics (no Camera class)."""
    c2w_cv = np.asarray(fr["transform_matrix"], dtype=np.float64) @ np.diag([1.0, -1.0, -1.0, 1.0])
    w2c = np.linalg.inv(c2w_cv)
    pc = pts @ w2c[:3, :3].T + w2c[:3, 3]
    assert (pc[:, 2] > 0.5).all()  # in front of the camera (~1 m)
    u = fr["fl_x"] * pc[:, 0] / pc[:, 2] + fr["cx"]
    v = fr["fl_y"] * pc[:, 1] / pc[:, 2] + fr["cy"]
    return np.stack([u, v], 1)


def test_camera_convention_gt_mesh_projects_into_mask(tiny):
    from scipy.ndimage import binary_dilation

    ua = tiny["synth_head_a"]
    te = _json(ua / "transforms_test.json")
    for fr in te["frames"][::5]:
        verts = np.load(ua / fr["gt_mesh_path"]).astype(np.float64)
        mask = _imread(ua / fr["fg_mask_path"])
        uv = _project_gl(fr, verts)
        col, row = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
        inside = (col >= 0) & (col < fr["w"]) & (row >= 0) & (row < fr["h"])
        assert inside.all()
        # every vertex lands on the foreground or, on the silhouette, within one pixel of it
        near = binary_dilation(mask > 0, iterations=1)
        assert near[row, col].all()
        assert (mask[row, col] > 0).mean() > 0.95
        assert (mask[row, col] == 255).mean() > 0.8  # most of them on fully covered pixels
        # negative control: forgetting the OpenGL -> OpenCV flip puts the head behind the camera
        c2w_bad = np.asarray(fr["transform_matrix"])
        pc = verts @ np.linalg.inv(c2w_bad)[:3, :3].T + np.linalg.inv(c2w_bad)[:3, 3]
        assert (pc[:, 2] < 0).all()


def test_gt_mesh_is_the_stand_in_posed_with_the_written_params(tiny):
    from avatarbench.bodymodels.flame import load_flame

    ua = tiny["synth_head_a"]
    info = _json(ua / "avatarbench_subject.json")
    model = load_flame(ua / info["body_model_path"]).double()
    te = _json(ua / "transforms_test.json")
    fr = te["frames"][0]
    p = {k: torch.from_numpy(v).double() for k, v in np.load(ua / fr["flame_param_path"]).items()}
    with torch.no_grad():
        verts = model.forward(**p).verts[0].numpy()
    gt = np.load(ua / fr["gt_mesh_path"])
    np.testing.assert_allclose(gt, verts, atol=2e-5)
    faces = np.load(ua / Path(fr["gt_mesh_path"]).parent / "faces.npy")
    np.testing.assert_array_equal(faces, model.faces.numpy())


def test_relocation_mean_translation_at_origin(tiny):
    for seq in sorted(tiny["synth_head_a"].parent.glob("synth*_v16_*")):
        ts = np.stack([np.load(p)["translation"][0] for p in sorted((seq / "flame_param").glob("*.npz"))])
        assert np.abs(ts.mean(0)).max() < 1e-6, seq.name
        # the cameras moved with the head: backup (capture world) and final differ by the same shift
        a = _json(seq / "transforms_backup.json")["frames"][0]["transform_matrix"]
        b = _json(seq / "transforms.json")["frames"][0]["transform_matrix"]
        np.testing.assert_allclose(np.asarray(a)[:3, :3], np.asarray(b)[:3, :3])


def test_loads_with_the_vhap_loader(tiny):
    vhap = pytest.importorskip("avatarbench.data.vhap")
    subj = vhap.load_vhap(tiny["synth_head_a"])
    assert subj.name == "synth_head_a"
    assert len(subj.frames("train")) == 60 and len(subj.frames("novel_view")) == 4
    assert len(subj.frames("self_reenact")) == 32
    assert subj.gt_mesh(4) is not None and subj.body_model_path is not None
    img = subj.frames("novel_view")[0].image()
    assert img.shape == (100, 69, 3)
    subj_b = vhap.load_vhap(tiny["synth_head_b"])
    assert subj_b.name == "synth_head_b" and subj_b.sequences("self_reenact") == ["FREE"]


# ------------------------------------------------------------------------------------------ determinism / cache
def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_bytes(tmp_path):
    generate_synthetic_heads(tmp_path / "a", MINI, seed=3, workers=1)
    generate_synthetic_heads(tmp_path / "b", MINI, seed=3, workers=2)  # also independent of the workers
    fa, fb = _all_files(tmp_path / "a"), _all_files(tmp_path / "b")
    assert fa.keys() == fb.keys()
    pngs = [k for k in fa if k.endswith(".png")]
    assert len(pngs) == 2 * 2 * 16 * 2  # identities x sequences x cameras x (image + mask)
    for k in fa:
        assert fa[k] == fb[k], k
    # another seed gives other images
    generate_synthetic_heads(tmp_path / "c", MINI, seed=4, workers=1)
    fc = _all_files(tmp_path / "c")
    assert sum(fa[k] != fc[k] for k in pngs) > len(pngs) // 2


def test_ensure_caches_atomically(tmp_path, monkeypatch):
    import avatarbench.data.synth.head as head

    ua = ensure_synthetic_head("synth_head_a", preset=MINI, root=tmp_path)
    assert ua.is_dir() and (ua.parent / COMPLETE_FILE).is_file() and ua.parent == tmp_path / "mini"
    stamp = (ua / "transforms_train.json").stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("must not regenerate")

    monkeypatch.setattr(head, "generate_synthetic_heads", boom)
    assert ensure_synthetic_head("synth_head", preset=MINI, root=tmp_path) == ua
    ub = ensure_synthetic_head("synth_head_b", preset=MINI, root=tmp_path)
    assert ub.parent == ua.parent and ub.name.startswith("UNION_synthB_")
    assert (ua / "transforms_train.json").stat().st_mtime_ns == stamp

    # an interrupted generation leaves neither a dataset nor a temporary folder behind
    def half(out_dir, *a, **k):
        Path(out_dir).mkdir(parents=True)
        (Path(out_dir) / "partial.txt").write_text("x")
        raise KeyboardInterrupt

    monkeypatch.setattr(head, "generate_synthetic_heads", half)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic_head("synth_head_a", preset=MINI, seed=7, root=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini"]


def test_presets():
    assert (PRESETS["smoke"].scale, PRESETS["full"].scale) == (0.25, 1.0)
    smoke_a = PRESETS["smoke"].sequences["synth_head_a"]
    assert [s for s, _ in smoke_a] == ["EMO-1", "EMO-2", "EXP-2", "EXP-3", "FREE"]
    assert PRESETS["smoke"].sequences["synth_head_b"][-1][0] == "FREE"
