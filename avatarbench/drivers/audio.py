"""WAV input and per-frame acoustic features (energy envelope, pitch, spectral brightness).

Features are computed on the audio resampled to :data:`ANALYSIS_RATE` with windows centred on
each video frame time ``t_i = i / fps`` (window 2/fps, at least 25 ms).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avatarbench.errors import DataError

ANALYSIS_RATE = 16000
MIN_RATE, MAX_RATE = 8000, 192000


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a PCM/float WAV file as mono float32.

    Returns:
        (audio (N,) float32 in [-1, 1], sample_rate).
    Raises:
        DataError: unreadable file, not a WAV, empty, or a sample rate outside 8..192 kHz.
    """
    from scipy.io import wavfile

    p = Path(path)
    if not p.is_file():
        raise DataError(p, "audio file not found", "a .wav file")
    try:
        sr, data = wavfile.read(str(p), mmap=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(p, f"cannot read as WAV ({e})", "a PCM or float WAV file") from e
    if not MIN_RATE <= int(sr) <= MAX_RATE:
        raise DataError(p, f"sample rate {sr} Hz", f"{MIN_RATE}..{MAX_RATE} Hz")
    data = np.asarray(data)
    if data.ndim == 2:
        data = data.mean(axis=1)
    if data.dtype.kind == "i":
        data = data.astype(np.float64) / float(np.iinfo(data.dtype).max + 1)
    elif data.dtype.kind == "u":  # 8-bit PCM is unsigned
        data = (data.astype(np.float64) - 128.0) / 128.0
    data = np.asarray(data, np.float32)
    if data.size == 0:
        raise DataError(p, "WAV file holds no samples", "at least one sample")
    if not np.all(np.isfinite(data)):
        raise DataError(p, "WAV file holds non-finite samples", "finite samples")
    return data, int(sr)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write (N,) float audio as 16-bit PCM mono."""
    from scipy.io import wavfile

    pcm = np.clip(np.round(np.asarray(audio, np.float64) * 32767.0), -32768, 32767).astype(np.int16)
    wavfile.write(str(path), int(sample_rate), pcm)
    return Path(path)


def resample(audio: np.ndarray, sr: int, target: int = ANALYSIS_RATE) -> np.ndarray:
    from math import gcd

    from scipy.signal import resample_poly

    if sr == target:
        return np.asarray(audio, np.float32)
    g = gcd(int(sr), int(target))
    return resample_poly(np.asarray(audio, np.float64), target // g, sr // g).astype(np.float32)


def frame_windows(audio: np.ndarray, sr: int, fps: float, n_frames: int, win_s: float) -> np.ndarray:
    """(n_frames, W) windows centred on i/fps (zero padded)."""
    W = max(int(round(win_s * sr)), 8)
    pad = np.concatenate([np.zeros(W, np.float32), audio.astype(np.float32), np.zeros(W, np.float32)])
    centres = np.round(np.arange(n_frames) / fps * sr).astype(np.int64) + W
    idx = centres[:, None] - W // 2 + np.arange(W)[None]
    return pad[np.clip(idx, 0, len(pad) - 1)]


def envelope(audio: np.ndarray, sr: int, fps: float, n_frames: int | None = None) -> np.ndarray:
    """(T,) RMS energy per video frame (window max(2/fps, 25 ms))."""
    T = n_frames if n_frames is not None else int(np.ceil(len(audio) / sr * fps))
    w = frame_windows(audio, sr, fps, T, max(2.0 / fps, 0.025))
    return np.sqrt(np.mean(w.astype(np.float64) ** 2, axis=1))


def acoustic_features(audio: np.ndarray, sr: int, fps: float, n_frames: int | None = None) -> dict[str, np.ndarray]:
    """Per-frame features.

    Returns:
        ``rms`` (T,) RMS; ``loud`` (T,) in [0, 1] (RMS / its 95th percentile, clipped);
        ``pitch`` (T,) Hz (0 = unvoiced; autocorrelation peak in 70..400 Hz with normalised
        strength > 0.45 and loud > 0.1); ``bright`` (T,) spectral centroid / 4 kHz, clipped to [0, 1].
    """
    x = resample(audio, sr)
    T = n_frames if n_frames is not None else int(np.ceil(len(audio) / sr * fps))
    rms = envelope(x, ANALYSIS_RATE, fps, T)
    ref = np.percentile(rms, 95) if T else 0.0
    loud = np.clip(rms / ref, 0.0, 1.0) if ref > 1e-8 else np.zeros_like(rms)
    w = frame_windows(x, ANALYSIS_RATE, fps, T, max(2.0 / fps, 0.04)).astype(np.float64)
    w = w - w.mean(axis=1, keepdims=True)
    w = w * np.hanning(w.shape[1])[None]
    n = 1 << int(np.ceil(np.log2(2 * w.shape[1])))
    spec = np.fft.rfft(w, n=n, axis=1)
    power = np.abs(spec) ** 2
    ac = np.fft.irfft(power, n=n, axis=1)[:, : w.shape[1]]
    lo, hi = int(ANALYSIS_RATE / 400), int(ANALYSIS_RATE / 70)
    hi = min(hi, w.shape[1] - 1)
    pitch = np.zeros(T)
    if hi > lo:
        seg = ac[:, lo:hi]
        k = np.argmax(seg, axis=1)
        strength = seg[np.arange(T), k] / np.maximum(ac[:, 0], 1e-12)
        voiced = (strength > 0.45) & (loud > 0.1)
        pitch = np.where(voiced, ANALYSIS_RATE / (k + lo), 0.0)
    freqs = np.fft.rfftfreq(n, 1.0 / ANALYSIS_RATE)
    centroid = (power * freqs[None]).sum(1) / np.maximum(power.sum(1), 1e-12)
    bright = np.clip(centroid / 4000.0, 0.0, 1.0)
    return {"rms": rms, "loud": loud, "pitch": pitch, "bright": bright}
