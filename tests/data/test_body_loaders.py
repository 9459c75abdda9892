"""Body dataset loaders (AvatarReX, THuman4.0, ActorsHQ), SMPL-X parameter files and body splits.

Every fixture is hand-made inside the test in the dataset's own layout: 2 cameras, 3 frames,
8 x 6 images with an asymmetric colour pattern per frame and camera and an asymmetric mask (so
channel swaps, flips, transposes and frame/camera mix-ups change the pixels), cameras with
hand-chosen K, R, T whose projections are computed by hand.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from avatarbench.data.actorshq import load_actorshq
from avatarbench.data.avatarrex import load_avatarrex
from avatarbench.data.body_splits import body_cross_frames, body_split_spec, read_missing_list
from avatarbench.data.smpl_params import load_smplx_params, save_smplx_params
from avatarbench.data.thuman4 import load_thuman4
from avatarbench.errors import DataError

W, H, NF = 8, 6, 3

# camera 0: identity rotation, 3 m in front of the origin; camera 1: rotated 90 deg about y
K0 = [[10.0, 0.0, 4.0], [0.0, 12.0, 3.0], [0.0, 0.0, 1.0]]
K1 = [[9.0, 0.0, 3.5], [0.0, 9.5, 2.5], [0.0, 0.0, 1.0]]
R0 = np.eye(3)
T0 = [0.0, 0.0, 3.0]
R1 = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # world +x -> camera -z ... a y-rotation
T1 = [0.1, -0.2, 2.5]


def smpl_arrays(n=NF, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"betas": rng.normal(size=(1, 10)).astype(np.float32),
            "global_orient": rng.normal(size=(n, 3)).astype(np.float32) * 0.3,
            "transl": rng.normal(size=(n, 3)).astype(np.float32),
            "body_pose": rng.normal(size=(n, 63)).astype(np.float32) * 0.1,
            "jaw_pose": np.zeros((n, 3), np.float32),
            "expression": rng.normal(size=(n, 10)).astype(np.float32),
            "left_hand_pose": np.zeros((n, 45), np.float32),
            "right_hand_pose": rng.normal(size=(n, 45)).astype(np.float32) * 0.1}


def pattern(t: int, c: int) -> np.ndarray:
    """(H, W, 3) uint8 image of frame t, camera c: red grows with x, green falls with y, blue mixes
    both; the frame shifts red, the camera blue. No two of (RGB/BGR swap, flip, transpose, other
    frame, other camera) leave it unchanged."""
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([30 + 25 * x + 8 * t, 220 - 30 * y, 100 + 10 * x + 15 * y + 20 * c], -1).astype(np.uint8)


def mask_pattern() -> np.ndarray:
    """(H, W) uint8 in {0, 255}: a wedge (x + 2 y < 10) in the top-left corner."""
    y, x = np.mgrid[0:H, 0:W]
    return ((x + 2 * y) < 10).astype(np.uint8) * 255


def expected_image(t: int, c: int, bg=(1.0, 1.0, 1.0)) -> np.ndarray:
    """The loader's composite of :func:`pattern` with :func:`mask_pattern` on ``bg``: (H, W, 3)."""
    m = mask_pattern()[..., None] / 255.0
    return pattern(t, c) / 255.0 * m + np.asarray(bg) * (1 - m)


#: JPEG at quality 100 without chroma subsampling moves these smooth patterns by <= 3 levels
JPEG_ATOL = 4 / 255


def write_img(path: Path, t: int, c: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = mask_pattern() if "mask" in str(path) else pattern(t, c)
    kw = {"quality": 100} if path.suffix == ".jpg" else {}
    if path.suffix == ".jpg" and a.ndim == 3:
        kw["subsampling"] = 0
    iio.imwrite(path, a, extension=path.suffix, **kw)


def check_frame_pixels(f, t: int, c: int) -> None:
    np.testing.assert_allclose(f.image().numpy(), expected_image(t, c), atol=JPEG_ATOL, rtol=0)
    np.testing.assert_allclose(f.mask().numpy()[..., 0], mask_pattern() / 255.0, atol=JPEG_ATOL, rtol=0)


def krt_entry(K, R, T):
    return {"K": K, "R": np.asarray(R).tolist(), "T": list(T), "imgSize": [W, H]}


def make_avatarrex(root: Path, *, missing_lines=(), drop=()) -> Path:
    names = ["22010708", "22010710"]
    calib = {names[0]: krt_entry(K0, R0, T0), names[1]: krt_entry(K1, R1, T1)}
    root.mkdir(parents=True)
    (root / "calibration_full.json").write_text(json.dumps(calib))
    np.savez(root / "smpl_params.npz", **smpl_arrays())
    for ci, n in enumerate(names):
        for t in range(NF):
            if (ci, t) in drop:
                continue
            write_img(root / n / f"{t:08d}.jpg", t, ci)
            write_img(root / n / "mask" / "pha" / f"{t:08d}.jpg", t, ci)
    if missing_lines:
        (root / "missing_img_files.txt").write_text("\n".join(missing_lines) + "\n")
    return root


def make_thuman4(root: Path, *, missing_lines=("cam01\\00000001.jpg",)) -> Path:
    root.mkdir(parents=True)
    (root / "calibration.json").write_text(json.dumps({"cam00": krt_entry(K0, R0, T0), "cam01": krt_entry(K1, R1, T1)}))
    np.savez(root / "smpl_params.npz", **smpl_arrays(seed=1))
    for ci, c in enumerate(("cam00", "cam01")):
        for t in range(NF):
            write_img(root / "images" / c / f"{t:08d}.jpg", t, ci)
            write_img(root / "masks" / c / f"{t:08d}.jpg", t, ci)
    (root / "missing_img_files.txt").write_text("\n".join(missing_lines) + "\n")
    return root


def make_actorshq(seq: Path, rows: list[dict]) -> Path:
    res = seq / "4x"
    res.mkdir(parents=True)
    with open(res / "calibration.csv", "w", newline="") as fp:
        w = csv.DictWriter(fp, fieldnames="name,w,h,rx,ry,rz,tx,ty,tz,fx,fy,px,py".split(","))
        w.writeheader()
        for r in rows:
            w.writerow(r)
    np.savez(seq / "smpl_params.npz", **smpl_arrays(seed=2))
    for ci, r in enumerate(rows):
        c = r["name"]
        for t in range(NF):
            write_img(res / "rgbs" / c / f"{c}_rgb{t:06d}.jpg", t, ci)
            write_img(res / "masks" / c / f"{c}_mask{t:06d}.png", t, ci)
    return seq


def hand_project(K, R, T, p):
    pc = np.asarray(R) @ p + np.asarray(T)
    return np.array([K[0][0] * pc[0] / pc[2] + K[0][2], K[1][1] * pc[1] / pc[2] + K[1][2], pc[2]])


# ---------------------------------------------------------------------------------------- AvatarReX
def test_avatarrex_cameras_project_like_hand_computation(tmp_path):
    s = load_avatarrex(make_avatarrex(tmp_path / "capture"))
    assert s.kind == "body" and s.body_model == "smplx"
    p = np.array([0.1, -0.2, 0.3])
    for cid, (K, R, T) in enumerate([(K0, R0, T0), (K1, R1, T1)]):
        got = s.cameras[cid].project(torch.tensor(p[None]))[0].numpy()
        np.testing.assert_allclose(got, hand_project(K, R, T, p), atol=1e-12)
        assert (s.cameras[cid].width, s.cameras[cid].height) == (W, H)  # imgSize is [w, h]
    assert [s.cameras[i].name for i in (0, 1)] == ["22010708", "22010710"]  # JSON key order = index


def test_avatarrex_frames_driving_and_images(tmp_path):
    root = make_avatarrex(tmp_path / "some_capture")  # unknown subject -> default split
    s = load_avatarrex(root)
    # default rule: last camera held out, first 80 % of 3 frames (2) train, frame 2 novel pose
    assert sorted({f.camera.id for f in s.frames("train")}) == [0]
    assert s.timesteps("train") == [0, 1]
    assert s.timesteps("self_reenact") == [2]
    assert {f.camera.id for f in s.frames("novel_view")} == {1}
    raw = smpl_arrays()
    f = s.frames("train")[1]
    assert f.image_path == root / "22010708" / "00000001.jpg"
    assert f.mask_path == root / "22010708" / "mask" / "pha" / "00000001.jpg"
    np.testing.assert_array_equal(f.driving["body_pose"], raw["body_pose"][1])
    np.testing.assert_array_equal(f.driving["betas"], raw["betas"][0])
    assert f.driving["leye_pose"].shape == (3,) and not f.driving["leye_pose"].any()
    assert f.image().shape == (H, W, 3) and f.mask().shape == (H, W, 1)
    for g in s.frames("train") + s.frames("novel_view") + s.frames("self_reenact"):
        check_frame_pixels(g, g.timestep, g.camera.id)


def test_avatarrex_scale_and_known_subject_split():
    spec = body_split_spec("avatarrex", "avatarrex_zzr", 16, 2001)
    assert spec.resolved_train_cameras(16) == [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 14, 15]
    assert list(spec.train_frames) == list(range(2001))
    assert spec.novel_view_cameras == (7, 13)
    assert spec.paper_eval_camera_names == ("22010710",) and spec.paper_eval_cameras == ()
    assert list(spec.paper_eval_frames) == list(range(500))
    assert len(spec.novel_pose_frames) == 0
    lbn1 = body_split_spec("avatarrex", "avatarrex_lbn1", 16, 1901)
    assert len(lbn1.train_frames) == 1901


def test_official_template_frames():
    """configs/<subject>/template.yaml frame_range[0] of the official repository."""
    frames = {("avatarrex", "avatarrex_zzr", 16, 2001): 0, ("avatarrex", "avatarrex_lbn1", 16, 1901): 1033,
              ("avatarrex", "avatarrex_lbn2", 16, 1871): None, ("actorshq", "Actor01", 160, 2200): 48,
              ("actorshq", "Actor04", 160, 1400): 294, ("actorshq", "Actor02", 160, 2200): None,
              ("thuman4", "subject02", 24, 2500): 54, ("thuman4", "subject00", 24, 2500): None}
    for args, want in frames.items():
        spec = body_split_spec(*args)
        assert spec.template_frame == want, args
        assert spec.to_dict()["template_frame"] == want


def _avatarrex_16(root: Path, order: list[str]) -> Path:
    """A 16-camera AvatarReX-named subject whose calibration lists the serials in ``order``."""
    root.mkdir(parents=True)
    (root / "calibration_full.json").write_text(json.dumps({n: krt_entry(K0, R0, T0) for n in order}))
    np.savez(root / "smpl_params.npz", **smpl_arrays())
    for ci, n in enumerate(order):
        for t in range(NF):
            write_img(root / n / f"{t:08d}.jpg", t, ci)
            write_img(root / n / "mask" / "pha" / f"{t:08d}.jpg", t, ci)
    return root


def test_avatarrex_paper_eval_camera_is_found_by_serial(tmp_path):
    """Paper Tab. 2 evaluates camera 22010710 (issue #15), wherever it sits in calibration_full.json."""
    order = [f"220107{i:02d}" for i in range(16) if i != 10]
    order.insert(5, "22010710")
    s = load_avatarrex(_avatarrex_16(tmp_path / "avatarrex_zzr", order))
    pe = s.frames("paper_eval")
    assert {f.camera.name for f in pe} == {"22010710"} and {f.camera.id for f in pe} == {5}
    assert sorted(f.timestep for f in pe) == [0, 1, 2]
    check_frame_pixels(pe[1], pe[1].timestep, 5)
    assert s.meta["split_spec"]["template_frame"] == 0
    order[5] = "22010799"  # the serial is absent: one clear line
    with pytest.raises(DataError, match=r"avatarrex_lbn1: split 'paper_eval' uses camera '22010710', which the "
                                        r"calibration does not have"):
        load_avatarrex(_avatarrex_16(tmp_path / "avatarrex_lbn1", order))


def test_known_subject_with_too_few_cameras_raises(tmp_path):
    # a folder named like an AvatarReX subject gets the upstream 16-camera split
    with pytest.raises(DataError, match="split 'train' uses camera index 2 but the calibration has 2 cameras"):
        load_avatarrex(make_avatarrex(tmp_path / "avatarrex_zzr"))


def test_avatarrex_scaled_cameras(tmp_path):
    s = load_avatarrex(make_avatarrex(tmp_path / "x"), scale=0.5)
    c = s.cameras[0]
    assert (c.width, c.height) == (4, 3)
    assert c.fx == pytest.approx(5.0) and c.cy == pytest.approx(1.5)
    assert s.frames("train")[0].image().shape == (3, 4, 3)


def test_avatarrex_missing_files_are_skipped_and_json_splits(tmp_path):
    root = make_avatarrex(tmp_path / "m", missing_lines=["22010708/00000000.jpg"], drop=[(1, 2)])
    (root / "avatarbench_subject.json").write_text(json.dumps({
        "name": "tiny", "splits": {"train": {"cameras": [0, "22010710"], "frame_range": [0, 3]},
                                   "novel_view": {"cameras": [], "frames": []}}}))
    s = load_avatarrex(root)
    assert s.name == "tiny"
    train = sorted((f.timestep, f.camera.id) for f in s.frames("train"))
    # (0, cam 0) is listed as missing, (2, cam 1) has no files: both skipped, the rest kept
    assert train == [(0, 1), (1, 0), (1, 1), (2, 0)]
    assert s.meta["skipped_frames"] == 2


def test_avatarrex_camera_without_images_raises(tmp_path):
    root = make_avatarrex(tmp_path / "n", drop=[(0, 0), (0, 1), (0, 2)])
    with pytest.raises(DataError, match="22010708.*none of the"):
        load_avatarrex(root)


def test_avatarrex_bad_calibration(tmp_path):
    root = make_avatarrex(tmp_path / "b")
    calib = json.loads((root / "calibration_full.json").read_text())
    del calib["22010710"]["K"]
    (root / "calibration_full.json").write_text(json.dumps(calib))
    with pytest.raises(DataError, match=r"calibration_full.json: camera '22010710' has no key 'K'"):
        load_avatarrex(root)
    calib["22010710"]["K"] = K1
    calib["22010710"]["R"] = (2 * np.eye(3)).tolist()
    (root / "calibration_full.json").write_text(json.dumps(calib))
    with pytest.raises(DataError, match="not a rotation"):
        load_avatarrex(root)
    calib["22010710"]["R"] = np.eye(3).tolist()
    calib["22010710"]["T"] = [1.0, 2.0]
    (root / "calibration_full.json").write_text(json.dumps(calib))
    with pytest.raises(DataError, match=r"key 'T' has shape \(2,\) \(expected \(3,\)"):
        load_avatarrex(root)


# ---------------------------------------------------------------------------------------- SMPL-X params
def test_smpl_params_bad_keys_and_shapes(tmp_path):
    p = tmp_path / "smpl_params.npz"
    a = smpl_arrays()
    del a["expression"]
    np.savez(p, **a)
    with pytest.raises(DataError, match=r"smpl_params.npz: missing key\(s\) 'expression'"):
        load_smplx_params(p)
    a = smpl_arrays()
    a["body_pose"] = np.zeros((NF, 60), np.float32)
    np.savez(p, **a)
    with pytest.raises(DataError, match=r"key 'body_pose' has shape \(3, 60\) \(expected \(3, 63\)\)"):
        load_smplx_params(p)
    a = smpl_arrays()
    a["left_hand_pose"] = np.zeros((NF + 1, 45), np.float32)
    np.savez(p, **a)
    with pytest.raises(DataError, match=r"'left_hand_pose' has shape \(4, 45\) \(expected \(3, 45\)\)"):
        load_smplx_params(p)
    a = smpl_arrays()
    a["transl"][1, 0] = np.nan
    np.savez(p, **a)
    with pytest.raises(DataError, match="'transl' has non-finite"):
        load_smplx_params(p)
    with pytest.raises(DataError, match="not found"):
        load_smplx_params(tmp_path / "nope.npz")


def test_smpl_params_roundtrip_and_deterministic_bytes(tmp_path):
    a = smpl_arrays()
    a21 = dict(a, body_pose=a["body_pose"].reshape(NF, 21, 3))  # (F, 21, 3) is accepted too
    pr = load_smplx_params(_savez(tmp_path / "a.npz", a21))
    np.testing.assert_array_equal(pr.frame(2)["body_pose"], a["body_pose"][2])
    per_frame = {k: v for k, v in a.items() if k != "betas"}
    save_smplx_params(tmp_path / "b.npz", a["betas"], per_frame)
    save_smplx_params(tmp_path / "c.npz", a["betas"], per_frame)
    assert (tmp_path / "b.npz").read_bytes() == (tmp_path / "c.npz").read_bytes()
    back = load_smplx_params(tmp_path / "b.npz")
    assert back.num_frames == NF and back.betas.shape == (10,)
    with pytest.raises(DataError, match="frame 3 requested"):
        back.frame(3)


def test_smpl_params_needing_pickle_give_one_line_with_the_conversion(tmp_path):
    """The official loader (np.load(allow_pickle=True), then astype(float32)) also reads object
    arrays of numbers and a pickled dict saved as .npz; we refuse to unpickle and say how to
    convert a trusted file, in one line."""
    import pickle
    import subprocess
    import sys

    a = smpl_arrays()
    obj = tmp_path / "obj" / "smpl_params.npz"
    obj.parent.mkdir()
    np.savez(obj, **dict(a, body_pose=a["body_pose"].astype(object)))
    pkl = tmp_path / "pkl" / "smpl_params.npz"
    pkl.parent.mkdir()
    pkl.write_bytes(pickle.dumps(a))
    for path, what in ((obj, "key 'body_pose' is an object array"), (pkl, "is a pickled object")):
        with pytest.raises(DataError) as ei:
            load_smplx_params(path)
        msg = str(ei.value)
        assert "\n" not in msg and msg.startswith(str(path)) and what in msg and "convert it once with: python -c" in msg
        cmd = msg.split("python -c ", 1)[1]
        assert cmd.startswith('"') and cmd.endswith('")')
        subprocess.run([sys.executable, "-c", cmd[1:-2]], check=True)  # the user's one-time conversion
        back = load_smplx_params(path)
        np.testing.assert_array_equal(back.frame(1)["body_pose"], a["body_pose"][1])
    npy = tmp_path / "smpl_params.npz"
    with open(npy, "wb") as fp:
        np.save(fp, np.zeros(3))
    with pytest.raises(DataError, match="single .npy array"):
        load_smplx_params(npy)


def _savez(p: Path, arrays) -> Path:
    np.savez(p, **arrays)
    return p


# ---------------------------------------------------------------------------------------- THuman4.0
def test_thuman4_loader_and_missing_list(tmp_path):
    root = make_thuman4(tmp_path / "tiny_thuman")  # not a known subject: default split rule
    s = load_thuman4(root)
    assert s.cameras[1].name == "cam01"
    p = np.array([-0.3, 0.2, 0.5])
    np.testing.assert_allclose(s.cameras[1].project(torch.tensor(p[None]))[0].numpy(),
                               hand_project(K1, R1, T1, p), atol=1e-12)
    allf = [(f.timestep, f.camera.id) for sp in ("train", "novel_view", "self_reenact") for f in s.frames(sp)]
    assert (1, 1) not in allf  # listed in missing_img_files.txt with a Windows path
    f = next(f for f in s.frames("train"))
    assert f.image_path == root / "images" / "cam00" / f"{f.timestep:08d}.jpg"
    assert f.mask_path == root / "masks" / "cam00" / f"{f.timestep:08d}.jpg"
    for g in [f for sp in ("train", "novel_view", "self_reenact") for f in s.frames(sp)]:
        check_frame_pixels(g, g.timestep, g.camera.id)


def test_thuman4_split_table():
    spec = body_split_spec("thuman4", "subject00", 24, 2500)
    assert spec.resolved_train_cameras(24) == [i for i in range(24) if i != 7]
    assert list(spec.train_frames) == list(range(2000))
    assert spec.self_reenact_cameras == (18,) and list(spec.novel_pose_frames) == list(range(2000, 2500))
    assert spec.novel_view_cameras == (7,)
    s02 = body_split_spec("thuman4", "subject02", 24, 2500)
    assert s02.resolved_train_cameras(24) == list(range(24)) and list(s02.train_frames)[0] == 385


def test_thuman4_bad_camera_key(tmp_path):
    root = make_thuman4(tmp_path / "tiny_thuman")
    cal = json.loads((root / "calibration.json").read_text())
    cal["camA"] = cal.pop("cam01")
    (root / "calibration.json").write_text(json.dumps(cal))
    with pytest.raises(DataError, match="unexpected camera key 'camA'"):
        load_thuman4(root)


def test_missing_list_unknown_camera(tmp_path):
    p = tmp_path / "missing_img_files.txt"
    p.write_text("cam09/00000001.jpg\n")
    with pytest.raises(DataError, match="line 1"):
        read_missing_list(p, ["cam00", "cam01"])


# ---------------------------------------------------------------------------------------- ActorsHQ
def _rot_y(a):
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def test_actorshq_calibration_is_c2w_rodrigues_with_normalised_intrinsics(tmp_path):
    # Cam001: c2w rotation 30 deg about y (Rodrigues (0, 0.5236, 0)), centre (0.5, 1.0, -3.0)
    a = math.radians(30.0)
    rows = [dict(name="Cam001", w=W, h=H, rx=0.0, ry=a, rz=0.0, tx=0.5, ty=1.0, tz=-3.0,
                 fx=1.25, fy=2.0, px=0.5, py=0.5),
            dict(name="Cam002", w=W, h=H, rx=0.0, ry=0.0, rz=0.0, tx=0.0, ty=0.0, tz=-2.0,
                 fx=1.0, fy=1.0, px=0.45, py=0.55)]
    seq = make_actorshq(tmp_path / "ActorsHQ" / "TinyActor" / "Sequence1", rows)
    s = load_actorshq(seq)
    assert s.name == "TinyActor"
    c = s.cameras[0]
    # pixels: fx = 1.25 * w = 10, fy = 2.0 * h = 12, cx = 0.5 * w = 4, cy = 0.5 * h = 3
    assert (c.fx, c.fy, c.cx, c.cy) == pytest.approx((10.0, 12.0, 4.0, 3.0))
    Rc2w, centre = _rot_y(a), np.array([0.5, 1.0, -3.0])
    p = np.array([0.2, 0.9, 0.4])
    pc = Rc2w.T @ (p - centre)  # world -> camera = inverse of the c2w pose
    want = [10.0 * pc[0] / pc[2] + 4.0, 12.0 * pc[1] / pc[2] + 3.0, pc[2]]
    np.testing.assert_allclose(c.project(torch.tensor(p[None]))[0].numpy(), want, atol=1e-12)
    np.testing.assert_allclose(c.center.numpy(), centre, atol=1e-12)
    # frames: images <Cam>/<Cam>_rgb%06d.jpg, masks .png
    f = s.frames("train")[0]
    assert f.image_path.name == f"Cam001_rgb{f.timestep:06d}.jpg"
    assert f.mask_path.name == f"Cam001_mask{f.timestep:06d}.png"
    assert f.image().shape == (H, W, 3)
    for g in [f for sp in ("train", "novel_view", "self_reenact") for f in s.frames(sp)]:
        check_frame_pixels(g, g.timestep, g.camera.id)
    # the sequence's 4x folder is accepted as the path too
    assert load_actorshq(seq / "4x").name == "TinyActor"


def test_actorshq_bad_csv(tmp_path):
    rows = [dict(name="Cam001", w=W, h=H, rx=0, ry=0, rz=0, tx=0, ty=0, tz=-2, fx=1, fy=1, px=0.5, py=0.5)]
    seq = make_actorshq(tmp_path / "TinyActor" / "Sequence1", rows)
    text = (seq / "4x" / "calibration.csv").read_text().replace(",fx,", ",focal,")
    (seq / "4x" / "calibration.csv").write_text(text)
    with pytest.raises(DataError, match="calibration.csv: missing column.*fx"):
        load_actorshq(seq)


def test_actorshq_split_table():
    spec = body_split_spec("actorshq", "Actor01", 160, 2200)
    cams = spec.resolved_train_cameras(160)
    assert len(cams) == 46 and 127 not in cams and 126 in cams
    assert list(spec.train_frames) == list(range(48, 2177))
    assert spec.novel_view_cameras == (127,)
    assert spec.paper_eval_cameras == (126,) and list(spec.paper_eval_frames)[0] == 48
    spec2 = body_split_spec("actorshq", "Actor02", 160, 2200)
    assert len(spec2.resolved_train_cameras(160)) == 47 and spec2.novel_view_cameras == (128,)


# ---------------------------------------------------------------------------------------- cross
def test_body_cross_frames_keep_target_betas_and_align_root(tmp_path):
    tgt = load_avatarrex(make_avatarrex(tmp_path / "t"))
    drv = load_thuman4(make_thuman4(tmp_path / "d", missing_lines=()))
    frames = body_cross_frames(tgt, drv, driver_split="all")
    assert frames and all(f.image_path is None and f.driver == "d" for f in frames)
    assert {f.camera.id for f in frames} == {1}  # the target's test camera
    drv_raw, tgt_raw = smpl_arrays(seed=1), smpl_arrays()
    t0 = frames[0].timestep
    for f in frames:
        np.testing.assert_array_equal(f.driving["betas"], tgt_raw["betas"][0])
        np.testing.assert_array_equal(f.driving["body_pose"], drv_raw["body_pose"][f.timestep])
    # "align": the first driver frame takes the target's first training root pose
    np.testing.assert_allclose(frames[0].driving["global_orient"], tgt_raw["global_orient"][0], atol=1e-5)
    np.testing.assert_allclose(frames[0].driving["transl"], tgt_raw["transl"][0], atol=1e-5)
    # relative root motion is preserved: |transl_t - transl_0| is the driver's
    later = [f for f in frames if f.timestep != t0]
    for f in later:
        np.testing.assert_allclose(np.linalg.norm(f.driving["transl"] - frames[0].driving["transl"]),
                                   np.linalg.norm(drv_raw["transl"][f.timestep] - drv_raw["transl"][t0]), atol=1e-5)
    keep = body_cross_frames(tgt, drv, driver_split="all", root="keep")
    np.testing.assert_array_equal(keep[0].driving["transl"], drv_raw["transl"][keep[0].timestep])
