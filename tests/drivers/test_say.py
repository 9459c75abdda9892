"""`avatarbench say` pieces that need no trained run: MP4 muxing with audio, input checks."""

import subprocess

import numpy as np
import pytest

from avatarbench.drivers.audio import write_wav
from avatarbench.drivers.say import mux_audio, say
from avatarbench.errors import ConfigError


def test_mp4_has_audio_stream(tmp_path):
    import imageio.v3 as iio
    import imageio_ffmpeg

    frames = np.zeros((10, 31, 20, 3), np.uint8)  # odd height: padded to even
    frames[:, :, :, 0] = np.arange(10)[:, None, None] * 20
    sr = 16000
    wav = write_wav(tmp_path / "a.wav", 0.3 * np.sin(2 * np.pi * 220 * np.arange(int(0.4 * sr)) / sr), sr)
    out = mux_audio(frames, 25.0, wav, tmp_path / "o.mp4")
    info = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(out)], capture_output=True, text=True).stderr
    assert "Audio: aac" in info and "Video: h264" in info
    assert iio.imread(out).shape[0] == 10
    assert not (tmp_path / "o.video.mp4").exists()


def test_say_refuses_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="exactly one"):
        say(tmp_path, text="hi", audio="x.wav")
    with pytest.raises(ConfigError, match="empty"):
        say(tmp_path, text="  ")
    with pytest.raises(ConfigError, match="not a run folder"):
        say(tmp_path, text="hello")


def test_say_end_to_end_on_a_trained_head_run(tmp_path):
    """A (very short) real flame_gaussians run speaks: MP4 with audio, reusable parameters, and the
    report's lip-sync measures, including the one read from the rendered mouth."""
    import json

    import av

    from avatarbench.engine.config import RunRequest
    from avatarbench.engine.run import execute

    req = RunRequest("flame_gaussians", "self_reenact", "smoke", subject="synth_head_a",
                     sets=(f"output.root={tmp_path}", "method.train.iterations=20", "protocol.max_frames=1",
                           "output.save_videos=false"))
    run_dir = execute(req, None, progress=False, echo=lambda *a: None).run_dir
    rep = say(run_dir, text="Hello there.", out=tmp_path / "s" / "hello.mp4", echo=lambda *a: None)
    with av.open(str(tmp_path / "s" / "hello.mp4")) as c:
        kinds = sorted(s.type for s in c.streams)
        n = sum(1 for _ in c.decode(video=0))
    assert kinds == ["audio", "video"] and rep["frames"] > 10 and abs(n - rep["frames"]) <= 1  # -shortest may drop the last frame
    assert rep["camera"] == 8  # the synthetic rig's frontal camera
    assert (tmp_path / "s" / "hello_params" / "audio.wav").is_file()
    assert json.loads((tmp_path / "s" / "hello.json").read_text())["lip_sync_render"] == rep["lip_sync_render"]
    for key in ("lip_sync_phonemes", "lip_sync_render"):
        assert np.isfinite(rep[key]["corr"]) and abs(rep[key]["lag_s"]) <= 0.3
