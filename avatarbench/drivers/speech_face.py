"""Speech -> FLAME: visemes (text) or acoustic features (audio) + prosody-driven idle motion.

Pipeline of :class:`SpeechFaceDriver` (frame times ``t_i = i / fps``, T = ceil(duration * fps)):

1. speech: eSpeak NG from text (phoneme timeline exact), or a WAV file; with a transcript, the
   transcript's eSpeak timeline is stretched linearly onto the WAV's speech span (first to last
   frame louder than 10 % of the 95th-percentile RMS) -- a coarse alignment, not forced alignment;
2. mouth: with phonemes, dominance-blended viseme weights (``visemes.viseme_weights``) mix the
   per-viseme jaw/expression fits of ``flame_fit.viseme_basis``; audio only, per-frame targets
   ``opening = 0.4 * loud^0.8``, ``width = 0.25 * (bright - 0.35)`` clipped to +-0.1,
   ``protrusion = -0.4 * min(width, 0)`` are matched by a non-negative convex mix of the viseme
   targets (NNLS), and that mix is applied to the fitted coefficients;
3. prosody: head nods (``neck_pose`` pitch, up to 0.06 rad) follow the positive part of the
   loudness' rise, with kicks at stressed vowels; brow raises follow pitch above the utterance's
   median (+25 % -> full raise); blinks every 2.5-5 s (seeded) and at pauses > 0.35 s, 0.2 s long;
   a slow idle sway of the head (< 0.02 rad) on ``rotation``.

Output keys: ``expr (T,100) jaw_pose (T,3) rotation (T,3) neck_pose (T,3) eyes_pose (T,6)
translation (T,3)``; ``rotation``/``neck_pose``/``translation`` are *offsets* to be added to
the target's rest pose (see :func:`avatarbench.drivers.frames.driven_frames`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from avatarbench.drivers.base import DEFAULT_FPS, ParamSequence
from avatarbench.drivers.tts import Phoneme, Speech


def _smooth(x: np.ndarray, fps: float, seconds: float) -> np.ndarray:
    """Exponential smoothing forward and backward (zero phase)."""
    a = 1.0 - np.exp(-1.0 / max(seconds * fps, 1e-6))
    y = np.asarray(x, np.float64).copy()
    for rng in (range(1, len(y)), range(len(y) - 2, -1, -1)):
        prev = y[0] if rng.start == 1 else y[-1]
        for i in rng:
            prev = prev + a * (y[i] - prev)
            y[i] = prev
    return y


def align_timeline(phonemes: list[Phoneme], loud: np.ndarray, fps: float) -> list[Phoneme]:
    """Stretch a timeline linearly onto the span of frames with ``loud > 0.1``."""
    on = np.nonzero(loud > 0.1)[0]
    spoken = [p for p in phonemes if p.symbol]
    if len(on) == 0 or not spoken:
        return phonemes
    a0, a1 = on[0] / fps, (on[-1] + 1) / fps
    p0, p1 = spoken[0].start, spoken[-1].end
    s = (a1 - a0) / max(p1 - p0, 1e-6)
    return [Phoneme(p.symbol, max(a0 + (p.start - p0) * s, 0.0), max(a0 + (p.end - p0) * s, 0.0)) for p in phonemes]


class SpeechFaceDriver:
    """Text or WAV -> FLAME parameter sequence (see module docstring).

    Args:
        text: words to speak (eSpeak NG), or
        audio: a WAV path (mono or stereo, 8..192 kHz), with optional ``transcript``.
        fps: output frame rate.
        model: a loaded :class:`~avatarbench.bodymodels.flame.FlameModel`; None = the default FLAME.
        shape: (n_shape,) identity the geometric fits are made for (None = mean shape).
        seed: blink timing seed.
    """

    body_model = "flame"

    def __init__(self, *, text: str | None = None, audio: str | Path | None = None, transcript: str | None = None,
                 fps: float = DEFAULT_FPS, model=None, shape=None, seed: int = 0, voice: str = "en-us"):
        if (text is None) == (audio is None):
            raise ValueError("give exactly one of text or audio")
        if fps <= 0:
            raise ValueError(f"fps={fps} (expected > 0)")
        self.text, self.audio, self.transcript = text, audio, transcript
        self.fps, self.model, self.shape, self.seed, self.voice = float(fps), model, shape, int(seed), voice
        self.timings: dict[str, float] = {}

    def speech(self) -> Speech:
        from avatarbench.drivers.tts import synthesize

        if self.text is not None:
            return synthesize(self.text, voice=self.voice)
        from avatarbench.drivers.audio import read_wav

        audio, sr = read_wav(self.audio)
        return Speech(audio, sr, [], self.transcript)

    def generate(self, speech: Speech | None = None) -> ParamSequence:
        from avatarbench.bodymodels.flame import load_flame
        from avatarbench.drivers.audio import acoustic_features
        from avatarbench.drivers.flame_fit import viseme_basis
        from avatarbench.drivers.visemes import viseme_weights

        t0 = time.perf_counter()
        sp = speech if speech is not None else self.speech()
        t1 = time.perf_counter()
        model = self.model if self.model is not None else load_flame(teeth=True)
        rig, basis = viseme_basis(model, self.shape)
        t2 = time.perf_counter()
        fps = self.fps
        T = max(int(np.ceil(sp.duration * fps)), 1)
        times = np.arange(T) / fps
        feat = acoustic_features(sp.audio, sp.sample_rate, fps, T)
        phon = sp.phonemes
        if not phon and self.transcript:
            from avatarbench.drivers.tts import synthesize

            phon = align_timeline(synthesize(self.transcript, voice=self.voice).phonemes, feat["loud"], fps)
        if phon:
            W = viseme_weights(phon, times)
            mode = "phonemes"
        else:
            W = self._audio_weights(feat, basis.targets)
            mode = "acoustic"
        jaw = W @ basis.jaw
        expr = W @ basis.expr
        neck, rot, brow_w, blink_w = self._prosody(feat, phon, times)
        expr = expr + brow_w[:, None] * basis.brow_expr[None] + blink_w[:, None] * basis.blink_expr[None]
        n_expr = expr.shape[1]
        expr_full = np.zeros((T, 100), np.float32)
        expr_full[:, : min(n_expr, 100)] = expr[:, :100]
        params = {"expr": expr_full, "jaw_pose": jaw.astype(np.float32), "rotation": rot.astype(np.float32),
                  "neck_pose": neck.astype(np.float32), "eyes_pose": np.zeros((T, 6), np.float32),
                  "translation": np.zeros((T, 3), np.float32)}
        t3 = time.perf_counter()
        self.timings = {"speech_s": t1 - t0, "viseme_fit_s": t2 - t1, "params_s": t3 - t2,
                        "audio_s": sp.duration}
        meta = {"driver": "text" if self.text is not None else "audio", "mode": mode, "text": sp.text,
                "offsets": ["rotation", "neck_pose", "translation"]}
        seq = ParamSequence("flame", fps, params, sp, meta)
        seq.viseme_weights = W
        seq.features = feat
        self.last = seq
        return seq

    @staticmethod
    def _audio_weights(feat: dict, targets: np.ndarray) -> np.ndarray:
        from scipy.optimize import nnls

        loud, bright = feat["loud"], feat["bright"]
        opening = 0.4 * np.power(loud, 0.8)
        width = np.clip(0.25 * (bright - 0.35), -0.1, 0.1) * (loud > 0.05)
        prot = -0.4 * np.minimum(width, 0.0)
        q = np.stack([opening, width, prot], 1)
        A = np.concatenate([targets.T, 3.0 * np.ones((1, targets.shape[0]))], 0)  # soft sum-to-one row
        W = np.zeros((len(q), targets.shape[0]))
        for i, qi in enumerate(q):
            W[i], _ = nnls(A, np.concatenate([qi, [3.0]]))
        return W / np.maximum(W.sum(1, keepdims=True), 1e-9)

    def _prosody(self, feat: dict, phon: list[Phoneme], times: np.ndarray):
        from avatarbench.drivers.visemes import is_stressed

        fps, T = self.fps, len(times)
        loud = _smooth(feat["loud"], fps, 0.08)
        rise = np.maximum(np.gradient(loud) * fps, 0.0)
        kick = np.zeros(T)
        for p in phon:
            if is_stressed(p.symbol):
                kick += np.exp(-0.5 * ((times - p.start) / 0.08) ** 2)
        nod = _smooth(0.5 * rise / max(np.percentile(rise, 95), 1e-6) + 0.5 * np.clip(kick, 0, 1), fps, 0.12)
        nod = 0.06 * np.clip(nod, 0.0, 1.0)
        neck = np.zeros((T, 3))
        neck[:, 0] = nod
        rot = np.zeros((T, 3))
        rot[:, 1] = 0.015 * np.sin(2 * np.pi * 0.23 * times + 0.7)
        rot[:, 0] = 0.008 * np.sin(2 * np.pi * 0.31 * times)
        pitch = feat["pitch"]
        voiced = pitch > 0
        brow = np.zeros(T)
        if voiced.sum() >= 3:
            med = np.median(pitch[voiced])
            brow = np.where(voiced, np.clip((pitch - med) / (0.25 * med), 0.0, 1.0), 0.0)
            brow = _smooth(brow, fps, 0.25)
        rng = np.random.default_rng(self.seed)
        starts, t = [], rng.uniform(0.5, 2.0)
        while t < times[-1] + 1e-9 if T else False:
            starts.append(t)
            t += rng.uniform(2.5, 5.0)
        starts += [0.5 * (p.start + p.end) for p in phon if not p.symbol and p.end - p.start > 0.35 and p.start > 0]
        blink = np.zeros(T)
        for s in starts:
            blink = np.maximum(blink, np.clip(1.0 - np.abs(times - s) / 0.1, 0.0, 1.0))
        return neck, rot, brow, blink
