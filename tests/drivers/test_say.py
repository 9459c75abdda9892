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
