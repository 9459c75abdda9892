"""Text -> speech, WAV input, phonemes -> visemes, lip-sync metric (avatarbench.drivers)."""

import numpy as np
import pytest

from avatarbench.drivers.audio import read_wav, write_wav
from avatarbench.drivers.lipsync import flicker, lip_sync
from avatarbench.drivers.tts import Phoneme, _timeline, synthesize, tts_available
from avatarbench.drivers.visemes import VISEMES, phoneme_to_viseme, viseme_weights
from avatarbench.errors import DataError

needs_tts = pytest.mark.skipif(not tts_available(), reason="espeakng-loader not installed")


@needs_tts
def test_phoneme_timeline_covers_audio():
    sp = synthesize("Hello world, this is a test.")
    assert sp.sample_rate == 22050
    ph = sp.phonemes
    # contiguous, ordered, non-empty intervals ending exactly at the end of the audio
    assert all(p.end > p.start for p in ph)
    assert all(abs(a.end - b.start) < 1e-12 for a, b in zip(ph, ph[1:]))
    assert ph[-1].end == pytest.approx(len(sp.audio) / sp.sample_rate, abs=1e-12)
    assert 0.0 <= ph[0].start < 0.1
    spoken = [p.symbol for p in ph if p.symbol]
    assert spoken[:4] == ["h", "ə", "l", "ˈoʊ"]  # eSpeak NG en-us IPA for "hello"
    # longer text -> proportionally longer audio (same speaking rate)
    sp2 = synthesize("Hello world, this is a test. Hello world, this is a test.")
    assert 1.6 < sp2.duration / sp.duration < 2.4


def test_timeline_from_events_hand_computed():
    sr = 100
    ph = _timeline([(10, "h"), (30, "a"), (60, ""), (70, "")], 100, sr)
    assert ph == [Phoneme("h", 0.1, 0.3), Phoneme("a", 0.3, 0.6), Phoneme("", 0.6, 1.0)]


@pytest.mark.parametrize("text", ["", "   ", "?!."])
def test_empty_text_is_refused(text):
    with pytest.raises(ValueError, match="empty"):
        synthesize(text)


def test_unreadable_and_wrong_rate_wav(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not a wav file at all")
    with pytest.raises(DataError, match="bad.wav: cannot read as WAV"):
        read_wav(bad)
    with pytest.raises(DataError, match="not found"):
        read_wav(tmp_path / "missing.wav")
    low = write_wav(tmp_path / "low.wav", np.zeros(400), 4000)
    with pytest.raises(DataError, match="sample rate 4000 Hz"):
        read_wav(low)
    ok = write_wav(tmp_path / "ok.wav", 0.5 * np.sin(np.linspace(0, 100, 1600)), 16000)
    a, sr = read_wav(ok)
    assert sr == 16000 and a.shape == (1600,) and abs(a.max() - 0.5) < 1e-3


def test_viseme_mapping_and_dominance_blending():
    assert phoneme_to_viseme("p") == "PP" and phoneme_to_viseme("ˈoʊ") == "O" and phoneme_to_viseme("") == "sil"
    ph = [Phoneme("a", 0.0, 0.2), Phoneme("m", 0.2, 0.28), Phoneme("a", 0.28, 0.5)]
    t = np.arange(0, 0.5, 0.01)
    W = viseme_weights(ph, t)
    assert np.allclose(W.sum(1), 1.0)
    # the bilabial dominates at its centre although it is short (high dominance)
    assert W[24].argmax() == VISEMES.index("PP")
    # coarticulation: the closure is anticipated -- PP already has weight before /m/ starts
    assert W[15, VISEMES.index("PP")] > 0.1
    # smooth: no step changes between 10 ms frames
    assert np.abs(np.diff(W, axis=0)).max() < 0.35


def test_lip_sync_recovers_known_lag():
    fps = 25.0
    rng = np.random.default_rng(3)
    env = np.convolve(rng.random(300), np.ones(5) / 5, mode="same")
    for lag in (-3, 0, 4):
        mouth = np.roll(env, lag) + 0.01 * rng.standard_normal(300)
        r = lip_sync(mouth, env, fps, max_lag_s=0.3)
        assert r["lag_frames"] == lag
        assert r["lag_s"] == pytest.approx(lag / fps)
        assert r["corr"] > 0.95
    assert np.isnan(lip_sync(np.ones(50), env[:50], fps)["corr"])


def test_flicker_hand_computed():
    f = np.zeros((3, 2, 2, 3), np.uint8)
    f[1, 0, 0] = 10
    mask = np.array([[True, False], [False, False]])
    assert flicker(f, mask) == pytest.approx(10.0)  # |10-0| then |0-10|, mean 10
    alphas = np.zeros((3, 2, 2))
    alphas[:, 1, 1] = 1.0
    assert flicker(f, alphas=alphas) == pytest.approx((10 + 10) / (2 * 3))


def test_flicker_of_renders_static_region_hand_computed():
    from types import SimpleNamespace

    import torch

    from avatarbench.drivers.run_metrics import flicker_of_renders

    bg = (1.0, 1.0, 1.0)
    frames, renders = [], {}
    for t in range(3):
        f = SimpleNamespace(key=f"k{t}", timestep=t, camera=SimpleNamespace(id=0))
        img = torch.ones(2, 2, 3)
        img[1, 1] = 0.2  # the avatar: not background, excluded
        if t == 1:
            img[0, 0] = 1.0 - 51 / 255  # a floater in frame 1 only, in the static region
        frames.append(f)
        renders[f.key] = img
    # 3 static pixels x 3 channels, two frame pairs; only pixel (0,0) changes by 51 twice
    assert flicker_of_renders(frames, renders, bg) == pytest.approx(51 * 2 * 3 / (2 * 3 * 3))
    assert flicker_of_renders(frames[:2], renders, bg) is None  # < 3 frames per camera


def test_missing_tts_library_is_one_line_error(monkeypatch):
    import sys

    from avatarbench.drivers import tts

    monkeypatch.setattr(tts, "_STATE", {})
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import fails
    with pytest.raises(tts.TTSUnavailable, match="pip install espeakng-loader") as e:
        synthesize("hello")
    assert "\n" not in str(e.value)
    assert not tts_available()


def test_align_timeline_stretches_onto_loud_span():
    from avatarbench.drivers.speech_face import align_timeline

    loud = np.zeros(20)
    loud[5:15] = 1.0  # speech from 0.5 s to 1.5 s at 10 fps
    ph = [Phoneme("", 0.0, 0.1), Phoneme("h", 0.1, 0.3), Phoneme("a", 0.3, 0.6)]
    out = align_timeline(ph, loud, 10.0)
    # spoken span 0.1..0.6 s (0.5 s) -> 0.5..1.5 s (scale 2)
    assert [p.symbol for p in out] == ["", "h", "a"]
    assert out[1].start == pytest.approx(0.5) and out[1].end == pytest.approx(0.9)
    assert out[2].end == pytest.approx(1.5)


def test_make_driver_parses_driver_strings(tmp_path):
    from avatarbench.drivers.base import SequenceDriver, SubjectDriver, is_generated_driver, make_driver
    from avatarbench.drivers.speech_face import SpeechFaceDriver
    from avatarbench.errors import ConfigError

    d = make_driver("text:Hi there")
    assert isinstance(d, SpeechFaceDriver) and d.text == "Hi there"
    d = make_driver("audio:a.wav|what is said")
    assert isinstance(d, SpeechFaceDriver) and str(d.audio) == "a.wav" and d.transcript == "what is said"
    assert isinstance(make_driver(f"params:{tmp_path}"), SequenceDriver)
    assert isinstance(make_driver("synth_head_b"), SubjectDriver)
    assert is_generated_driver("text:x") and not is_generated_driver("synth_head_b") and not is_generated_driver(None)
    with pytest.raises(ConfigError, match="empty"):
        make_driver("  ")
