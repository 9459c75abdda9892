"""Offline text -> speech with eSpeak NG, with a phoneme timeline.

The library and its voice data come from the PyPI package ``espeakng-loader`` (a manylinux
wheel bundling ``libespeak-ng.so`` and ``espeak-ng-data``); nothing is taken from a system
install. The library is driven through ``ctypes`` with its public C API (``speak_lib.h``):

- ``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, PHONEME_EVENTS | PHONEME_IPA |
  DONT_EXIT)`` returns the sample rate (22050 Hz for the bundled voices);
- ``espeak_Synth`` calls back with 16-bit mono PCM chunks and an event list; each
  ``espeakEVENT_PHONEME`` event carries the phoneme (IPA, UTF-8, at most 8 bytes, stress marks
  included) and ``sample``, the index of its first audio sample.

A phoneme ends where the next phoneme event starts; the last one ends at the end of the audio.
Phoneme events with an empty name are pauses and are reported as ``""`` (silence), so the
timeline covers the audio from its first phoneme to its last sample without gaps.

eSpeak NG keeps global state; calls are serialised with a lock.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np

from avatarbench.errors import AvatarbenchError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_INIT_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_PARAM_RATE = 1

_LOCK = threading.Lock()
_STATE: dict = {}


class TTSUnavailable(AvatarbenchError):
    """The eSpeak NG library (package ``espeakng-loader``) is missing or cannot be loaded."""


@dataclass(frozen=True)
class Phoneme:
    """One phoneme of a timeline: IPA symbol (``""`` = pause) and its [start, end) in seconds."""

    symbol: str
    start: float
    end: float


@dataclass
class Speech:
    """Synthesised or loaded speech.

    Attributes:
        audio: (N,) float32 mono samples in [-1, 1].
        sample_rate: Hz.
        phonemes: the timeline (possibly empty for audio without a transcript), ordered by time.
        text: the transcript, or None.
    """

    audio: np.ndarray
    sample_rate: int
    phonemes: list[Phoneme]
    text: str | None = None

    @property
    def duration(self) -> float:
        return float(len(self.audio)) / float(self.sample_rate)


class _Event(ctypes.Structure):
    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _Id)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def _library():
    """Load and initialise libespeak-ng once; returns (lib, sample_rate, sink dict)."""
    if "lib" in _STATE:
        return _STATE["lib"], _STATE["sr"], _STATE["sink"]
    try:
        import espeakng_loader
    except ImportError as e:
        raise TTSUnavailable("text-to-speech needs eSpeak NG from the package 'espeakng-loader' "
                             "(pip install espeakng-loader); it is not installed") from e
    try:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = str(espeakng_loader.get_data_path()).encode()
    except OSError as e:
        raise TTSUnavailable(f"cannot load eSpeak NG from espeakng-loader ({e}); reinstall 'espeakng-loader'") from e
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data,
                               _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT)
    if sr <= 0:
        raise TTSUnavailable(f"eSpeak NG failed to initialise with data {data.decode()} (returned {sr})")
    sink: dict = {"chunks": [], "events": []}

    def callback(wav, n, events):
        if wav and n > 0:
            sink["chunks"].append(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.int16, copy=True))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0")[0].decode("utf-8", "replace")
                sink["events"].append((int(ev.sample), name))
            i += 1
        return 0

    cb = _CALLBACK(callback)
    lib.espeak_SetSynthCallback(cb)
    _STATE.update(lib=lib, sr=int(sr), sink=sink, cb=cb)  # keep the callback alive
    return lib, int(sr), sink


def tts_available() -> bool:
    try:
        _library()
    except TTSUnavailable:
        return False
    return True


def synthesize(text: str, *, voice: str = "en-us", rate_wpm: int = 160) -> Speech:
    """Speak ``text`` with eSpeak NG.

    Args:
        text: the transcript (UTF-8); must contain a letter or digit.
        voice: an eSpeak NG voice name (``en-us``, ``en``, ``de``, ...).
        rate_wpm: speaking rate in words per minute (eSpeak's 80..450).

    Returns:
        :class:`Speech` with audio (N,) float32 at the library's rate and the phoneme timeline.

    Raises:
        ValueError: empty text, unknown voice. TTSUnavailable: library missing or unloadable.
    """
    if not isinstance(text, str) or not any(ch.isalnum() for ch in text):
        raise ValueError(f"text to speak is empty or has no letters: {text!r}")
    if not 80 <= int(rate_wpm) <= 450:
        raise ValueError(f"rate_wpm={rate_wpm} (expected 80..450 words per minute)")
    with _LOCK:
        lib, sr, sink = _library()
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"unknown eSpeak NG voice {voice!r} (e.g. en-us, en, de, fr)")
        lib.espeak_SetParameter(_PARAM_RATE, int(rate_wpm), 0)
        sink["chunks"].clear()
        sink["events"].clear()
        raw = text.encode("utf-8")
        err = lib.espeak_Synth(raw, len(raw) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
        lib.espeak_Synchronize()
        if err != 0:
            raise TTSUnavailable(f"eSpeak NG failed to synthesise the text (error {err})")
        pcm = np.concatenate(sink["chunks"]) if sink["chunks"] else np.zeros(0, np.int16)
        events = list(sink["events"])
    audio = (pcm.astype(np.float32) / 32768.0)
    return Speech(audio=audio, sample_rate=sr, phonemes=_timeline(events, len(audio), sr), text=text)


def _timeline(events: list[tuple[int, str]], n_samples: int, sr: int) -> list[Phoneme]:
    """Phoneme events (first sample, symbol) -> contiguous [start, end) intervals in seconds."""
    events = sorted(((min(max(s, 0), n_samples), name) for s, name in events), key=lambda e: e[0])
    out: list[Phoneme] = []
    for i, (s, name) in enumerate(events):
        e = events[i + 1][0] if i + 1 < len(events) else n_samples
        if e <= s:
            continue
        sym = name.strip()
        if out and out[-1].symbol == "" and sym == "":
            out[-1] = Phoneme("", out[-1].start, e / sr)
        else:
            out.append(Phoneme(sym, s / sr, e / sr))
    return out
