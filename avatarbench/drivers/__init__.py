"""Driving sources: per-frame FLAME parameters from subjects, parameter folders, text and speech.

See ``docs/drivers.md``. Modules: ``base`` (interface, VHAP writing, ``make_driver``), ``tts``
(eSpeak NG), ``audio`` (WAV, acoustic features), ``visemes`` (phoneme -> viseme, coarticulation),
``flame_fit`` (geometric viseme -> FLAME fits), ``speech_face`` (speech -> FLAME), ``frames``
(sequences -> evaluation frames of a target subject), ``lipsync`` (metrics without ground truth).
"""

from avatarbench.drivers.base import Driver, ParamSequence, make_driver, read_sequence, write_sequence

__all__ = ["Driver", "ParamSequence", "make_driver", "read_sequence", "write_sequence"]
