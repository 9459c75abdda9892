"""Phonemes -> visemes, viseme mouth targets, and coarticulation by dominance blending.

Mouth quantities (all divided by the rest mouth width ``W0`` of the loaded model, so targets
carry over between heads):

- ``opening``: inner-lip gap at the middle of the mouth minus its rest value;
- ``width``: corner-to-corner distance / W0 - 1;
- ``protrusion``: forward (+z, FLAME's facing direction) motion of the middle of the lips.

The viseme classes and their targets are a compact version of the MPEG-4 / Oculus viseme sets
(values chosen from typical articulation: a wide-open /a/ opens about 40 % of the mouth width,
rounded vowels narrow the mouth by 10-20 % and push the lips forward).

Coarticulation follows Cohen & Massaro (1993): every phoneme segment ``s`` (centre ``c_s``,
duration ``d_s``) has a dominance ``D_s(t) = a_s exp(-|t - c_s| / tau_s)``, with
``tau_s = k * max(d_s, 40 ms)`` (``k = 0.5`` before the centre: anticipation, ``0.7`` after:
carry-over); the blended viseme weights are ``D_s(t) / sum_r D_r(t)``. Bilabials and labiodentals
have a high ``a`` (the lips must close / touch whatever the neighbours are); pauses a low one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avatarbench.drivers.tts import Phoneme

QUANTITIES = ("opening", "width", "protrusion")

#: viseme -> (opening, width, protrusion) targets, in units of the rest mouth width
VISEME_TARGETS: dict[str, tuple[float, float, float]] = {
    "sil": (0.00, 0.00, 0.00),
    "PP": (0.00, -0.02, 0.01),
    "FF": (0.04, 0.00, -0.01),
    "TH": (0.10, 0.02, 0.00),
    "DD": (0.12, 0.03, 0.00),
    "kk": (0.16, 0.02, 0.00),
    "CH": (0.08, -0.10, 0.05),
    "SS": (0.05, 0.06, 0.00),
    "RR": (0.09, -0.08, 0.04),
    "aa": (0.40, 0.04, 0.00),
    "E": (0.25, 0.06, 0.00),
    "I": (0.12, 0.10, 0.00),
    "O": (0.30, -0.12, 0.05),
    "U": (0.10, -0.18, 0.07),
}
VISEMES = tuple(VISEME_TARGETS)

#: dominance magnitude per viseme (lip closures dominate their neighbours)
DOMINANCE = {"sil": 0.3, "PP": 3.0, "FF": 2.0, "TH": 1.0, "DD": 0.8, "kk": 0.6, "CH": 1.2, "SS": 1.0,
             "RR": 1.0, "aa": 1.0, "E": 1.0, "I": 1.0, "O": 1.2, "U": 1.3}

# IPA symbol (stress/length marks stripped) -> viseme
_IPA = {
    "p": "PP", "b": "PP", "m": "PP",
    "f": "FF", "v": "FF",
    "θ": "TH", "ð": "TH",
    "t": "DD", "d": "DD", "n": "DD", "l": "DD", "ɾ": "DD", "ɫ": "DD", "ʔ": "DD", "n̩": "DD", "l̩": "DD",
    "k": "kk", "g": "kk", "ɡ": "kk", "ŋ": "kk", "h": "kk", "x": "kk",
    "tʃ": "CH", "dʒ": "CH", "ʃ": "CH", "ʒ": "CH",
    "s": "SS", "z": "SS",
    "ɹ": "RR", "r": "RR", "ɚ": "RR", "ɝ": "RR", "ɜ": "RR",
    "a": "aa", "ɑ": "aa", "æ": "aa", "ʌ": "aa", "ɐ": "aa", "aɪ": "aa", "aʊ": "aa", "ɒ": "aa",
    "e": "E", "ɛ": "E", "eɪ": "E", "ə": "E", "ɜː": "E", "ᵻ": "I",
    "i": "I", "ɪ": "I", "j": "I", "iː": "I",
    "o": "O", "ɔ": "O", "oʊ": "O", "ɔɪ": "O", "əʊ": "O", "ɔː": "O",
    "u": "U", "ʊ": "U", "w": "U", "uː": "U",
}
_STRIP = "ˈˌːˑ̩̯͡‿"


def phoneme_to_viseme(symbol: str) -> str:
    """IPA phoneme (as eSpeak NG reports it) -> viseme name; ``""`` -> ``sil``.

    Unknown symbols fall back to their first character's class, else ``DD`` (a neutral
    half-open consonant) for consonants and ``E`` for anything vowel-like.
    """
    s = symbol.strip()
    if not s:
        return "sil"
    if s in _IPA:
        return _IPA[s]
    core = "".join(ch for ch in s if ch not in _STRIP)
    if core in _IPA:
        return _IPA[core]
    for n in (2, 1):
        if core[:n] in _IPA:
            return _IPA[core[:n]]
    return "E" if any(ch in "aeiouæɑɒɔəɛɪʊʌɐɜ" for ch in core) else "DD"


def is_stressed(symbol: str) -> bool:
    return "ˈ" in symbol


def viseme_weights(phonemes: Sequence[Phoneme], times: np.ndarray, *, anticipation: float = 0.5,
                   carryover: float = 0.7, min_dur: float = 0.04) -> np.ndarray:
    """Dominance-blended viseme weights.

    Args:
        phonemes: the timeline.
        times: (T,) seconds.
    Returns:
        (T, len(VISEMES)) non-negative weights, rows summing to 1 (all ``sil`` when there are
        no phonemes).
    """
    times = np.asarray(times, np.float64)
    W = np.zeros((len(times), len(VISEMES)))
    if not phonemes:
        W[:, VISEMES.index("sil")] = 1.0
        return W
    for ph in phonemes:
        v = phoneme_to_viseme(ph.symbol)
        c = 0.5 * (ph.start + ph.end)
        d = max(ph.end - ph.start, min_dur)
        dt = times - c
        tau = np.where(dt < 0, anticipation * d, carryover * d)
        W[:, VISEMES.index(v)] += DOMINANCE[v] * np.exp(-np.abs(dt) / tau)
    s = W.sum(axis=1, keepdims=True)
    empty = s[:, 0] < 1e-12
    W = W / np.maximum(s, 1e-12)
    W[empty, VISEMES.index("sil")] = 1.0
    return W


def target_matrix() -> np.ndarray:
    """(len(VISEMES), 3) targets in :data:`QUANTITIES` order."""
    return np.array([VISEME_TARGETS[v] for v in VISEMES], np.float64)
