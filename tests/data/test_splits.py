"""Derived splits: cross-identity reenactment transfer rules and the training-view subsets."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_vhap as fx  # noqa: E402

from avatarbench.data import cross_reenact_frames, load_vhap, spread_camera_ids, subset_train_views  # noqa: E402
from avatarbench.data.camera import Camera  # noqa: E402
from avatarbench.data.splits import rig_angles  # noqa: E402
from avatarbench.data.subject import Subject  # noqa: E402
from avatarbench.errors import ConfigError  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    parent = tmp_path_factory.mktemp("splits")
    target = fx.write_union(parent, subject="077", code=1)  # timesteps 0..3 train, 4..5 test
    driver = fx.write_union(parent, subject="104", code=2, dynamic=True)
    free = fx.write_sequence(parent, "104", "FREE", code=3, num_timesteps=4, t0=100)
    return load_vhap(target.root), load_vhap(driver.root), load_vhap(free.folder)


# ------------------------------------------------------------------ cross-identity reenactment
def test_cross_reenact_shape_from_target_motion_from_driver(data):
    target, driver, _ = data
    frames = cross_reenact_frames(target, driver)
    # driver's self_reenact split: timesteps 4, 5; all 7 target cameras
    assert len(frames) == 2 * 7
    assert [f.timestep for f in frames] == [4] * 7 + [5] * 7
    assert [f.camera.id for f in frames[:7]] == sorted(fx.YAWS)
    for f in frames:
        assert f.subject == "077" and f.driver == "104" and f.sequence == "EXP-4"
        assert f.image_path is None and f.mask_path is None and not f.has_gt
        assert f.camera is target.cameras[f.camera.id]
        d = f.driving
        drv = fx.flame_arrays(2, f.timestep)  # driver: code 2
        tgt = fx.flame_arrays(1, 0)           # target identity: its first training timestep
        np.testing.assert_array_equal(d["shape"], tgt["shape"])
        np.testing.assert_array_equal(d["static_offset"], tgt["static_offset"][0])
        for k in ("expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation"):
            np.testing.assert_array_equal(d[k], drv[k][0])  # absolute transfer, not relative
        assert "dynamic_offset" not in d  # the driver's per-identity geometry is never transferred
        assert set(d) == {"shape", "static_offset", "expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose",
                          "translation"}
    with pytest.raises(ValueError):
        frames[0].image()
    # frames of one timestep share one lazily built parameter set
    assert frames[0].driving is frames[6].driving and frames[0].driving is not frames[7].driving


def test_cross_reenact_driver_split_sequence_and_cameras(data):
    target, _, free = data
    # a single-sequence FREE export keeps only its last 30 % in self_reenact ...
    # (its JSON timesteps are local 0..3; its FLAME values were written for t = 100..103)
    assert [f.timestep for f in cross_reenact_frames(target, free, cameras=[8])] == [3]
    # ... its name selects the whole sequence
    frames = cross_reenact_frames(target, free, driver_split="FREE", cameras=[8, 5])
    assert [(f.timestep, f.camera.id) for f in frames] == [(t, c) for t in (0, 1, 2, 3) for c in (8, 5)]
    assert frames[0].driving["expr"][0] == pytest.approx(0.01 * 100 + 3)
    assert frames[0].driving["shape"][0] == 1.0
    assert frames[0].meta == {"driver_sequence": "FREE", "driver_timestep": 0}
    own = cross_reenact_frames(target, free, driver_split="all", cameras=[target.cameras[9].resized(6, 8)])
    assert len(own) == 4 and own[0].camera.width == 6
    with pytest.raises(ConfigError, match="no split or sequence"):
        cross_reenact_frames(target, free, driver_split="EMO-9")
    with pytest.raises(ConfigError, match="no camera"):
        cross_reenact_frames(target, free, cameras=[3])


def test_cross_reenact_rejects_other_body_models(data):
    target, _, _ = data
    body = Subject("b", "body", Path("."), {}, {"train": []}, body_model="smplx")
    with pytest.raises(ConfigError):
        cross_reenact_frames(target, body)


# ------------------------------------------------------------------ training-view subsets
def test_subset_train_views_on_fixture_arc(data):
    target, _, _ = data
    # train cameras 5, 6, 7, 9, 10, 11 at yaws -60, -40, -20, 20, 40, 60 (camera 8 is novel-view)
    three = subset_train_views(target, 3)
    # targets at -60, 0, 60 deg: the ends, and for 0 the tie -20/+20 goes to the smaller id
    assert three.meta["train_cameras"] == [5, 7, 11] and three.meta["num_train_views"] == 3
    assert {f.camera.id for f in three.frames("train")} == {5, 7, 11}
    assert len(three.frames("train")) == 3 * 4
    assert three.frames("novel_view") is target.frames("novel_view")
    assert target.meta["train_cameras"] == [5, 6, 7, 9, 10, 11]  # the original is untouched
    assert subset_train_views(target, 2).meta["train_cameras"] == [5, 11]
    assert subset_train_views(target, 16).meta["train_cameras"] == [5, 6, 7, 9, 10, 11]
    assert subset_train_views(target, None) is target
    with pytest.raises(ConfigError):
        subset_train_views(target, 0)


def test_subset_never_picks_the_novel_view_camera(data):
    target, _, _ = data
    leaky = target.with_frames("train", target.frames("train") + target.frames("novel_view"))
    assert 8 in {f.camera.id for f in leaky.frames("train")}
    one = subset_train_views(leaky, 1)  # the frontal camera would be 8: it must be skipped
    assert one.meta["train_cameras"] == [7]  # -20 / +20 deg tie: smaller id
    assert 8 not in subset_train_views(leaky, 7).meta["train_cameras"]


def _look_at_cv(center: np.ndarray, target: np.ndarray) -> np.ndarray:
    fwd = (target - center) / np.linalg.norm(target - center)
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd])
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = R, -R @ center
    return w2c


def _rig(layout, transform=np.eye(4)):
    cams = []
    for i, (yaw, pitch) in enumerate(layout):
        y, p = math.radians(yaw), math.radians(pitch)
        c = np.array([math.sin(y) * math.cos(p), math.sin(p), math.cos(y) * math.cos(p)])
        w2c = _look_at_cv(c, np.zeros(3)) @ np.linalg.inv(transform)
        cams.append(Camera.from_intrinsics(100, 100, 50, 50, 100, 100, w2c, id=i))
    return cams


NERSEMBLE_LIKE = [(-50, 18), (-25, 20), (0, 21), (25, 20), (50, 18), (-60, 2), (-40, 1), (-20, 0), (20, 0),
                  (40, 1), (60, 2), (-36, -14), (-12, -15), (12, -15), (36, -14)]  # 15: front camera removed


def test_rig_angles_recover_yaw_and_pitch():
    az, el = rig_angles(_rig([(-40, 10), (0, 0), (40, -10)]))
    np.testing.assert_allclose(np.degrees(az), [-40, 0, 40], atol=1e-6)  # mean direction is the front
    np.testing.assert_allclose(np.degrees(el), [10, 0, -10], atol=1e-6)


def test_spread_over_a_three_row_arc_is_deterministic_and_frame_invariant():
    cams = _rig(NERSEMBLE_LIKE)
    six = spread_camera_ids(cams, 6)
    # targets every 24 deg from -60 to 60 hit cameras at yaw -60 (5), -36 (11), -12 (12), 12 (13), 36 (14), 60 (10)
    assert six == [5, 10, 11, 12, 13, 14]
    # every 120/7 deg: -60 (5), -42.9 -> -40 (6), -25.7 -> -25 (1), -8.6 -> -12 (12), 8.6 -> 12 (13),
    # 25.7 -> 25 (3), 42.9 -> 40 (9), 60 (10)
    assert spread_camera_ids(cams, 8) == [1, 3, 5, 6, 9, 10, 12, 13]
    assert spread_camera_ids(cams, 1) == [2]  # the frontal target: yaw 0 in the upper row
    # the choice depends only on the rig's shape, not on the world frame it is expressed in
    Rz = np.eye(4)
    a = 0.7
    Rz[:3, :3] = [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
    Rz[:3, 3] = [0.3, -0.2, 1.5]
    assert spread_camera_ids(_rig(NERSEMBLE_LIKE, Rz), 6) == six
    assert spread_camera_ids(_rig(NERSEMBLE_LIKE, Rz), 8) == spread_camera_ids(cams, 8)


def test_spread_on_a_full_ring_takes_every_other_camera():
    ring = _rig([(k * 45.0, 0.0) for k in range(8)])
    # no front: the first largest gap (all 45 deg) is 5 -> 6, so targets start at camera 6 every 90 deg
    assert spread_camera_ids(ring, 4) == [0, 2, 4, 6]
