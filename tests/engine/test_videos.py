"""Reenactment videos: a watchable frame rate, ground truth beside the render."""

from __future__ import annotations

import numpy as np

from avatarbench.data.images import save_png
from avatarbench.engine.evaluate import _png_path, video_fps, write_videos
from tests.engine.toy import toy_subject


def test_video_fps_plays_short_sequences_for_seconds_not_a_blink():
    assert video_fps(10) == 2  # 10 frames: 5 s (was 0.4 s at 25 fps)
    assert video_fps(40) == 10
    assert video_fps(1000) == 25
    assert video_fps(1) == 2


def test_video_shows_ground_truth_beside_the_render(tmp_path):
    import imageio.v3 as iio

    subject = toy_subject(tmp_path / "data", n_t=12, size=(40, 32))
    frames = [f for f in subject.frames("novel_view")]
    for f in frames:
        save_png(_png_path(tmp_path / "eval", f), np.zeros((32, 40, 3)))  # black renders
    (path,) = write_videos(frames, tmp_path / "eval")
    meta = iio.immeta(path, plugin="FFMPEG")
    video = iio.imread(path, plugin="FFMPEG")
    assert meta["fps"] == video_fps(12) == 3
    assert video.shape == (12, 32, 2 * 40 + 2, 3)  # GT | 2 px gap | render
    gt0 = (frames[0].image().numpy() * 255).round()
    left = video[0, :, :40].astype(float)
    assert abs(left.mean() - gt0.mean()) < 6  # the GT half carries the GT (H.264 is lossy)
    assert video[0, :, 42:].mean() < 8  # the render half is the black render
