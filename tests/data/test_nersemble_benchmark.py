"""NeRSemble benchmark layout: tracking v2 conversion, loader, protocols, bad input.

The conversion is checked against the toolkit's documented maths (``FlameProvider``:
``scale * R_xyz(rotation) FLAME(shape, expr, [0, jaw], neck, eyes) + translation``), written here
independently in float64 with hand-built Euler matrices.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from avatarbench.errors import ConfigError, DataError

pytest.importorskip("av", reason="PyAV decodes the benchmark's MP4 videos")


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def toolkit_vertices(model, tr: dict, t: int) -> np.ndarray:
    """The toolkit's FlameProvider.get_vertices, re-derived: float64, Euler 'XYZ' = Rx Ry Rz."""
    m = model.double()
    with torch.no_grad():
        v = m.forward(shape=torch.from_numpy(np.asarray(tr["shape"], np.float64)[:1]),
                      expr=torch.from_numpy(np.asarray(tr["expression"], np.float64)[t:t + 1]),
                      rotation=torch.zeros(1, 3, dtype=torch.float64),
                      neck_pose=torch.from_numpy(np.asarray(tr["neck"], np.float64)[t:t + 1]),
                      jaw_pose=torch.from_numpy(np.asarray(tr["jaw"], np.float64)[t:t + 1]),
                      eyes_pose=torch.from_numpy(np.asarray(tr["eyes"], np.float64)[t:t + 1])).verts[0].numpy()
    a, b, c = np.asarray(tr["rotation"], np.float64)[t]
    R = _rx(a) @ _ry(b) @ _rz(c)
    s = float(np.asarray(tr["scale"]).reshape(-1)[0])
    return s * v @ R.T + np.asarray(tr["translation"], np.float64)[t]


@pytest.fixture(scope="module")
def flame_standin():
    from avatarbench.bodymodels.flame import load_flame, read_flame_file
    from avatarbench.bodymodels.flame_synthetic import ensure_synthetic_flame

    path = ensure_synthetic_flame()
    return path, load_flame(path, teeth=False), read_flame_file(path)[0]


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """The ``tiny`` stand-in (participant 393, 48^2, 1 frame per training sequence, 2 per test
    sequence), generated once per test session into the private cache."""
    from avatarbench.data.synth.nersemble_benchmark_writer import ensure_nersemble_benchmark

    return ensure_nersemble_benchmark(preset="tiny") / "393"


def _random_tracking(rng, T=4, scale=1.07):
    return {"shape": rng.normal(size=(1, 300)) * 0.5, "expression": rng.normal(size=(T, 100)) * 0.5,
            "rotation": rng.uniform(-0.5, 0.5, size=(T, 3)), "rotation_matrices": np.zeros((T, 3, 3)),
            "translation": rng.normal(size=(T, 3)) * 0.05, "jaw": np.abs(rng.normal(size=(T, 3))) * 0.1,
            "frames": np.arange(T), "scale": np.array([[scale]]), "neck": rng.normal(size=(T, 3)) * 0.1,
            "eyes": rng.normal(size=(T, 6)) * 0.1}


def test_euler_xyz_is_intrinsic_rx_ry_rz():
    from avatarbench.data.flame_tracking import euler_xyz_to_matrix

    ang = np.array([[0.3, -0.7, 1.1], [-1.2, 0.4, 0.05]])
    R = euler_xyz_to_matrix(ang)
    for i, (a, b, c) in enumerate(ang):
        np.testing.assert_allclose(R[i], _rx(a) @ _ry(b) @ _rz(c), atol=1e-12)


def test_converted_tracking_gives_the_toolkit_mesh(flame_standin):
    """scale * suite FLAME(converted) == toolkit maths on the original parameters."""
    from avatarbench.data.flame_tracking import root_joint_linear, tracking_to_driving

    _, model, arrays = flame_standin
    tr = _random_tracking(np.random.default_rng(0))
    j0, dirs = root_joint_linear(arrays)
    drv, s = tracking_to_driving(tr, j0, dirs)
    assert s == pytest.approx(1.07)
    m = model.double()
    for t in range(4):
        want = toolkit_vertices(model, tr, t)
        with torch.no_grad():
            got = m.forward(**{k: torch.from_numpy(v[t:t + 1].astype(np.float64)) for k, v in drv.items()}).verts[0]
        got = s * got.numpy()
        assert np.abs(got - want).max() < 2e-6  # float32 driving storage
        # the root-joint term matters: dropping it moves the mesh by millimetres or more
        drv_naive = dict(drv, translation=(tr["translation"][t:t + 1] / s).astype(np.float32))
        with torch.no_grad():
            naive = s * m.forward(**{k: torch.from_numpy(v[t:t + 1].astype(np.float64)) if k != "translation"
                                     else torch.from_numpy(v.astype(np.float64))
                                     for k, v in drv_naive.items()}).verts[0].numpy()
        assert np.abs(naive - want).max() > 1e-3


def test_driving_to_tracking_inverts(flame_standin):
    from avatarbench.data.flame_tracking import driving_to_tracking, root_joint_linear, tracking_to_driving

    _, _, arrays = flame_standin
    tr = _random_tracking(np.random.default_rng(1))
    j0, dirs = root_joint_linear(arrays)
    drv, s = tracking_to_driving(tr, j0, dirs)
    back = driving_to_tracking(drv, s, j0, dirs)
    for k in ("translation", "expression", "jaw", "neck", "eyes", "shape", "scale"):
        np.testing.assert_allclose(back[k], tr[k], atol=2e-5, err_msg=k)
    np.testing.assert_allclose(back["rotation"], tr["rotation"], atol=2e-6)
    assert set(back) == set(tr)


def test_loader_mesh_and_cameras_match_toolkit_maths(standin, flame_standin):
    """Frames of the stand-in: the converted mesh in the frame's camera projects like the toolkit's
    world mesh in the calibration camera."""
    from avatarbench.bodymodels.flame import load_flame
    from avatarbench.data import load_subject
    from avatarbench.data.camera import Camera
    from avatarbench.data.nersemble_benchmark import tracking_path

    subject = load_subject(standin)
    assert subject.meta["format"] == "nersemble_benchmark"
    model = load_flame(subject.body_model_path, teeth=False)
    calib = json.loads((standin / "calibration" / "camera_params.json").read_text())
    for f in [subject.frames("train")[3], subject.frames("self_reenact")[5]]:
        with np.load(tracking_path(standin, f.sequence)) as z:
            tr = {k: z[k] for k in z.files}
        t = f.meta["frame_index"]
        want = toolkit_vertices(model, tr, t)
        with torch.no_grad():
            got = model.double().forward(**{k: torch.from_numpy(np.asarray(v, np.float64))[None]
                                            for k, v in f.driving.items()}).verts[0]
        serial = f.camera.name
        world_cam = Camera(K=np.asarray(calib["intrinsics"][serial]), world_to_cam=np.asarray(calib["world_2_cam"][serial]),
                           width=f.camera.width, height=f.camera.height)
        px_toolkit = world_cam.project(torch.from_numpy(want))
        px_suite = f.camera.project(got)
        assert (px_toolkit[:, :2] - px_suite[:, :2]).abs().max() < 1e-3  # pixels
        # depth is in the sequence's world unit (world / scale)
        torch.testing.assert_close(px_toolkit[:, 2] / f.meta["scale"], px_suite[:, 2], rtol=1e-5, atol=1e-6)
        assert abs(f.meta["scale"] - 1.0) > 0.02  # the stand-in exercises the scale


def test_official_and_local_protocol_splits(standin):
    from avatarbench.data import load_subject
    from avatarbench.data.nersemble_benchmark import MONO_SERIALS, MONO_TEST_SEQUENCES, MONO_TRAIN_SEQUENCES

    s = load_subject(standin)
    assert s.name == "nersemble_393"
    assert len(s.frames("train")) == 18 * 1
    assert {f.camera.name for f in s.frames("train")} == {"222200037"}
    assert {f.camera.id for f in s.frames("train")} == {8}
    test = s.frames("self_reenact")
    assert len(test) == 4 * 2 * 4 and not any(f.has_gt for f in test)
    assert {f.sequence for f in test} == set(MONO_TEST_SEQUENCES)
    assert {f.camera.name for f in test} == set(MONO_SERIALS)
    assert s.frames("novel_view") == []
    assert s.background == (0.0, 0.0, 0.0)
    img = s.frames("train")[0].image()
    assert img.shape == (48, 48, 3) and 0.05 < float(s.frames("train")[0].mask().mean()) < 0.95
    # timesteps are unique across sequences
    ts = [f.timestep for f in s.frames("train")]
    assert len(set(ts)) == len(ts)

    loc = load_subject(standin, protocol="nersemble_mono_local")
    assert loc.name == "nersemble_393_local" and loc.meta["dataset"] == "nersemble_mono_local"
    held = MONO_TRAIN_SEQUENCES[-1]
    assert {f.sequence for f in loc.frames("self_reenact")} == {held}
    assert all(f.has_gt for f in loc.frames("self_reenact"))
    assert held not in {f.sequence for f in loc.frames("train")}
    assert not set(MONO_TEST_SEQUENCES) & set(loc.sequences())  # the hidden test set is not touched
    with pytest.raises(ConfigError, match="not a training sequence"):
        load_subject(standin, protocol="nersemble_mono_local", local_holdout="FREE")


def test_video_frames_decode_lazily(standin):
    from avatarbench.data.video import CACHE, CHUNK, read_video_frame

    CACHE.clear()
    before = CACHE.decoded
    p = standin / "sequences" / "EXP-2-eyes" / "images" / "cam_222200037.mp4"
    a = read_video_frame(p, 0)
    b = read_video_frame(p, 0)
    assert a.shape == (48, 48, 3) and b.dtype == np.uint8
    assert CACHE.decoded - before == 1  # decoded once, then served from the cache
    assert CHUNK == 32
    with pytest.raises(DataError, match="has no frame 5 \\(it ends after 1 frames\\)"):
        read_video_frame(p, 5)


def _copy(standin, tmp_path):
    """A copy of the participant folder (the stand-in FLAME linked in at the same relative place)."""
    dst = tmp_path / "mono_flame_avatar" / "393"
    shutil.copytree(standin, dst)
    (tmp_path / "body_model").symlink_to(standin.parent.parent / "body_model")
    return dst


def test_partial_download_names_the_missing_file(standin, tmp_path):
    from avatarbench.data import load_subject

    root = _copy(standin, tmp_path)
    (root / "sequences" / "EXP-4-lips" / "alpha_maps" / "cam_222200037.mp4").unlink()
    with pytest.raises(DataError, match=r"EXP-4-lips/alpha_maps/cam_222200037\.mp4: file not found"):
        load_subject(root)
    root2 = _copy(standin, tmp_path / "b")
    shutil.rmtree(root2 / "sequences" / "SEN-09-frown_events_bad")
    with pytest.raises(DataError, match=r"SEN-09-frown_events_bad/tracking/flame2023_tracking_v2\.npz: file not found"):
        load_subject(root2)


@pytest.mark.parametrize("change,pattern", [
    ("extra", r"extra key\(s\) foo"),
    ("missing", r"missing key\(s\) neck"),
    ("shape", r"key 'eyes' has shape \(2, 5\)"),
])
def test_bad_tracking_file(standin, tmp_path, change, pattern):
    from avatarbench.data import load_subject

    root = _copy(standin, tmp_path)
    p = root / "sequences" / "EMO-3-angry+sad" / "tracking" / "flame2023_tracking_v2.npz"
    with np.load(p) as z:
        d = {k: z[k] for k in z.files}
    if change == "extra":
        d["foo"] = np.zeros(2)
    elif change == "missing":
        del d["neck"]
    else:
        d["eyes"] = np.zeros((2, 5), np.float32)
    np.savez(p, **d)
    with pytest.raises(DataError, match=pattern) as e:
        load_subject(root)
    assert "EMO-3-angry+sad/tracking/flame2023_tracking_v2.npz" in str(e.value) and "\n" not in str(e.value)


def test_video_frame_count_must_match_tracking(standin, tmp_path):
    from avatarbench.data import load_subject
    from avatarbench.data.video import write_video

    root = _copy(standin, tmp_path)
    p = root / "sequences" / "EXP-5-mouth" / "images" / "cam_222200037.mp4"
    write_video(p, [np.zeros((48, 48, 3), np.uint8)] * 3, 24.3)
    with pytest.raises(DataError, match=r"EXP-5-mouth/images/cam_222200037\.mp4: has 3 frames \(expected 1"):
        load_subject(root)


def test_nvs_folder_is_refused(tmp_path):
    from avatarbench.data import load_subject

    root = tmp_path / "nvs" / "388" / "calibration"
    root.mkdir(parents=True)
    (root / "camera_params.json").write_text('{"world_2_cam": {}, "intrinsics": {}}')
    with pytest.raises(DataError, match="no FLAME tracking"):
        load_subject(root.parent)


def test_local_protocol_uses_added_holdout_camera_videos(standin, tmp_path):
    """Hold-out camera videos of training sequences (not in the official download) become the local
    protocol's novel views and join its held-out sequence; the official protocol ignores them."""
    from avatarbench.data import load_subject
    from avatarbench.data.nersemble_benchmark import MONO_HOLD_OUT_SERIALS, MONO_TRAIN_SEQUENCES, alpha_path, images_path

    root = _copy(standin, tmp_path)
    for seq in MONO_TRAIN_SEQUENCES:
        for serial in MONO_HOLD_OUT_SERIALS:
            for src, dst in ((images_path(root, seq, "222200037"), images_path(root, seq, serial)),
                             (alpha_path(root, seq, "222200037"), alpha_path(root, seq, serial))):
                shutil.copyfile(src, dst)
    loc = load_subject(root, protocol="nersemble_mono_local")
    nv = loc.frames("novel_view")
    assert len(nv) == 17 * 1 * 3 and {f.camera.name for f in nv} == set(MONO_HOLD_OUT_SERIALS)
    assert all(f.has_gt for f in nv) and MONO_TRAIN_SEQUENCES[-1] not in {f.sequence for f in nv}
    assert len(loc.frames("self_reenact")) == 1 * 4
    assert {f.camera.name for f in loc.frames("train")} == {"222200037"}
    off = load_subject(root)
    assert off.frames("novel_view") == [] and {f.camera.name for f in off.frames("train")} == {"222200037"}


def test_conversion_matches_the_toolkit_flame_provider_with_real_flame():
    """With the real FLAME 2023 and the toolkit's FlameProvider importable (it reads
    ``~/.cache/FLAME/flame2023.pkl`` and the landmark embeddings there), the suite's mesh from the
    converted tracking equals the provider's ``get_vertices``. Skipped otherwise."""
    import os
    import sys
    import types
    from pathlib import Path

    from avatarbench.bodymodels.flame import load_flame, read_flame_file, resolve_flame_path
    from avatarbench.data.flame_tracking import root_joint_linear, tracking_to_driving

    if not os.environ.get("AVATARBENCH_FLAME_MODEL"):
        pytest.skip("AVATARBENCH_FLAME_MODEL is not set to flame2023.pkl")
    path = resolve_flame_path(None)
    arrays = read_flame_file(path)[0]
    if arrays.get("synthetic"):
        pytest.skip("AVATARBENCH_FLAME_MODEL is the synthetic stand-in")
    cache = Path.home() / ".cache" / "FLAME"
    for name in ("flame2023.pkl", "flame_static_embedding.pkl", "flame_dynamic_embedding.npy"):
        if not (cache / name).is_file():
            pytest.skip(f"{cache / name} is missing (the toolkit's FlameProvider needs it and downloads the "
                        "embeddings otherwise)")
    pytest.importorskip("flame_model", reason="flame-model (the toolkit's FLAME layer) is not installed")
    pytest.importorskip("nersemble_benchmark", reason="nersemble-benchmark is not installed")
    if "open3d" not in sys.modules:
        try:
            import open3d  # noqa: F401
        except ImportError:
            sys.modules["open3d"] = types.ModuleType("open3d")
    from nersemble_benchmark.data.benchmark_data import FlameTracking
    from nersemble_benchmark.models.flame import FlameProvider

    tr = _random_tracking(np.random.default_rng(3), T=3)
    tr = {k: (v.astype(np.float32) if k != "frames" else v) for k, v in tr.items()}
    provider = FlameProvider(FlameTracking(**tr))
    drv, s = tracking_to_driving({k: np.asarray(v, np.float64) if k != "frames" else v for k, v in tr.items()},
                                 *root_joint_linear(arrays))
    model = load_flame(path, teeth=False)
    for t in range(3):
        want = provider.get_vertices(t)
        with torch.no_grad():
            got = s * model.forward(**{k: torch.from_numpy(v[t:t + 1]) for k, v in drv.items()}).verts[0].numpy()
        assert np.abs(got[:5023] - want).max() < 1e-4


_PROVIDER_SCRIPT = r"""
import sys, types, json
import numpy as np
sys.modules.setdefault("open3d", types.ModuleType("open3d"))
from nersemble_benchmark.data.benchmark_data import FlameTracking
from nersemble_benchmark.models.flame import FlameProvider
with np.load(sys.argv[1]) as z:
    tr = {k: z[k] for k in z.files}
p = FlameProvider(FlameTracking(**tr))
np.save(sys.argv[2], np.stack([p.get_vertices(t) for t in range(tr["expression"].shape[0])]))
"""


def test_conversion_matches_the_toolkit_flame_provider_on_the_standin(flame_standin, tmp_path):
    """The toolkit's own FlameProvider (flame-model's FLAME, run on the stand-in model file placed
    where it looks, ``~/.cache/FLAME/flame2023.pkl``, with placeholder landmark embeddings that only
    its landmark output uses) gives the same vertices as the suite's FLAME on the converted tracking."""
    import os
    import subprocess
    import sys

    for mod in ("nersemble_benchmark", "flame_model", "smplx"):
        pytest.importorskip(mod, reason=f"{mod} is not installed (toolkit comparison)")
    from avatarbench.data.flame_tracking import root_joint_linear, tracking_to_driving

    path, model, arrays = flame_standin
    home = tmp_path / "home"
    cache = home / ".cache" / "FLAME"
    cache.mkdir(parents=True)
    shutil.copyfile(path, cache / "flame2023.pkl")
    import pickle

    F = int(arrays["faces"].shape[0])
    with open(cache / "flame_static_embedding.pkl", "wb") as f:
        pickle.dump({"lmk_face_idx": np.arange(51) % F, "lmk_b_coords": np.full((51, 3), 1 / 3)}, f)
    np.save(cache / "flame_dynamic_embedding.npy",
            np.array({"lmk_face_idx": np.zeros((79, 17), np.int64), "lmk_b_coords": np.full((79, 17, 3), 1 / 3)},
                     dtype=object), allow_pickle=True)
    tr = _random_tracking(np.random.default_rng(5), T=3)
    tr = {k: (v.astype(np.float32) if k != "frames" else v) for k, v in tr.items()}
    np.savez(tmp_path / "tr.npz", **tr)
    env = dict(os.environ, HOME=str(home))
    res = subprocess.run([sys.executable, "-c", _PROVIDER_SCRIPT, str(tmp_path / "tr.npz"), str(tmp_path / "v.npy")],
                         env=env, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"the toolkit's FlameProvider did not run here: {res.stderr.strip().splitlines()[-1]}")
    want = np.load(tmp_path / "v.npy")
    drv, s = tracking_to_driving({k: np.asarray(v, np.float64) if k != "frames" else v for k, v in tr.items()},
                                 *root_joint_linear(arrays))
    m = model.float()
    for t in range(3):
        with torch.no_grad():
            got = s * m.forward(**{k: torch.from_numpy(v[t:t + 1]) for k, v in drv.items()}).verts[0].numpy()
        assert np.abs(got - want[t]).max() < 1e-5
