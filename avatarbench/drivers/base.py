"""The driver interface: per-frame FLAME / SMPL-X parameters at a frame rate.

A :class:`Driver` produces a :class:`ParamSequence`: ``params[key]`` is a (T, D) float32 array
per driving key (FLAME: ``expr (T,100) jaw_pose (T,3) rotation (T,3) neck_pose (T,3)
eyes_pose (T,6) translation (T,3)``), sampled at ``fps``, optionally with the speech that
produced it. FLAME sequences are written in VHAP's layout (one ``flame_param/{t:05d}.npz`` per
timestep, batch dimension 1, identity ``shape`` included), SMPL-X sequences as the body
datasets' ``smpl_params.npz`` ((T, D) per key, ``betas (1, S)``), next to ``sequence.json`` (fps,
body model, source) and, for speech, ``audio.wav`` and ``phonemes.json``; such a folder is
itself a driver (``params:FOLDER``).

Drivers (:func:`make_driver` parses the ``data.driver`` string):

==============================  ==========================================================
``NAME`` or ``PATH``            another subject's tracked sequence (cross-reenactment)
``params:FOLDER``               a written sequence / a bare VHAP ``flame_param`` folder
``text:Hello there``            text -> eSpeak NG speech -> visemes -> FLAME
``audio:FILE.wav``              speech -> FLAME from acoustic features
``audio:FILE.wav|transcript``   speech + transcript (phoneme timeline aligned to the audio)
==============================  ==========================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from avatarbench.errors import ConfigError, DataError

FLAME_MOTION_SIZES = {"expr": 100, "jaw_pose": 3, "rotation": 3, "neck_pose": 3, "eyes_pose": 6, "translation": 3}
DEFAULT_FPS = 25.0


@dataclass
class ParamSequence:
    """Per-frame driving parameters.

    Attributes:
        body_model: ``"flame"`` or ``"smplx"``.
        fps: frames per second.
        params: key -> (T, D) float32.
        speech: the :class:`~avatarbench.drivers.tts.Speech` it was generated from, or None.
        meta: free-form provenance (driver kind, text, timings).
    """

    body_model: str
    fps: float
    params: dict[str, np.ndarray]
    speech: object | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(next(iter(self.params.values())).shape[0]) if self.params else 0

    def frame(self, t: int) -> dict[str, np.ndarray]:
        """Parameters of frame ``t`` without batch dim: key -> (D,)."""
        return {k: v[t] for k, v in self.params.items()}


class Driver(Protocol):
    """Anything that produces a :class:`ParamSequence`."""

    body_model: str

    def generate(self) -> ParamSequence: ...


def write_sequence(seq: ParamSequence, folder: str | Path, *, identity: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``seq`` as ``folder/flame_param/{t:05d}.npz`` (VHAP keys, batch dim 1) + ``sequence.json``.

    ``identity`` (e.g. ``{"shape": (300,)}``) is stored in every file; FLAME ``shape`` defaults
    to zeros(300) so the files are valid VHAP parameter files.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ident = dict(identity or {})
    if seq.body_model != "flame":  # SMPL-X: one smpl_params.npz, (T, D) per key (the body datasets' format)
        arrays = {k: np.asarray(v, np.float32) for k, v in seq.params.items()}
        arrays["betas"] = np.asarray(ident.get("betas", np.zeros(10)), np.float32).reshape(1, -1)
        np.savez(folder / "smpl_params.npz", **arrays)
    sub = folder / "flame_param"
    if seq.body_model == "flame":
        sub.mkdir(parents=True, exist_ok=True)
        ident.setdefault("shape", np.zeros(300, np.float32))
    for t in range(len(seq) if seq.body_model == "flame" else 0):
        arrays = {k: np.asarray(v[t], np.float32)[None] for k, v in seq.params.items()}
        arrays.update({k: np.asarray(v, np.float32)[None] if k != "shape" else np.asarray(v, np.float32)
                       for k, v in ident.items()})
        np.savez(sub / f"{t:05d}.npz", **arrays)
    info = {"body_model": seq.body_model, "fps": seq.fps, "num_frames": len(seq), "meta": seq.meta}
    if seq.speech is not None:
        from avatarbench.drivers.audio import write_wav

        sp = seq.speech
        write_wav(folder / "audio.wav", sp.audio, sp.sample_rate)
        (folder / "phonemes.json").write_text(json.dumps(
            [{"symbol": p.symbol, "start": p.start, "end": p.end} for p in sp.phonemes], ensure_ascii=False, indent=0))
        info["audio"] = "audio.wav"
    (folder / "sequence.json").write_text(json.dumps(info, indent=2, ensure_ascii=False, default=str))
    return folder


def read_sequence(folder: str | Path, *, fps: float | None = None) -> ParamSequence:
    """Read a folder written by :func:`write_sequence`, or a bare VHAP ``flame_param`` folder (or its parent)."""
    from avatarbench.data.flame_params import read_flame_params

    folder = Path(folder)
    info = {}
    if (folder / "sequence.json").is_file():
        info = json.loads((folder / "sequence.json").read_text())
    if (folder / "smpl_params.npz").is_file() and not (folder / "flame_param").is_dir():
        return _read_smplx_sequence(folder, info, fps)
    pdir = folder if folder.name == "flame_param" else folder / "flame_param"
    files = sorted(pdir.glob("*.npz")) if pdir.is_dir() else []
    if not files:
        raise DataError(folder, "no flame_param/*.npz files", "a VHAP flame_param sequence folder")
    frames = [read_flame_params(f) for f in files]
    params = {k: np.stack([fr[k] for fr in frames]).astype(np.float32) for k in FLAME_MOTION_SIZES if k in frames[0]}
    speech = _read_speech(folder, info)
    rate = float(info.get("fps") or fps or DEFAULT_FPS)
    meta = {"driver": "params", "source": str(folder), **info.get("meta", {})}
    return ParamSequence("flame", rate, params, speech, meta)


def _read_speech(folder: Path, info: dict):
    if not (info.get("audio") and (folder / info["audio"]).is_file()):
        return None
    from avatarbench.drivers.audio import read_wav
    from avatarbench.drivers.tts import Phoneme, Speech

    audio, sr = read_wav(folder / info["audio"])
    phon = []
    if (folder / "phonemes.json").is_file():
        phon = [Phoneme(p["symbol"], float(p["start"]), float(p["end"]))
                for p in json.loads((folder / "phonemes.json").read_text())]
    return Speech(audio, sr, phon, (info.get("meta") or {}).get("text"))


def _read_smplx_sequence(folder: Path, info: dict, fps: float | None) -> ParamSequence:
    """A body sequence: ``smpl_params.npz`` (the body datasets' format; betas are dropped)."""
    from avatarbench.data.smpl_params import load_smplx_params

    sp = load_smplx_params(folder / "smpl_params.npz")
    params = {k: np.asarray(v, np.float32) for k, v in sp.per_frame.items()}
    rate = float(info.get("fps") or fps or DEFAULT_FPS)
    meta = {"driver": "params", "source": str(folder), **info.get("meta", {})}
    return ParamSequence("smplx", rate, params, _read_speech(folder, info), meta)


class SequenceDriver:
    """A written sequence folder (``params:FOLDER``): FLAME ``flame_param/`` or SMPL-X ``smpl_params.npz``."""

    body_model = "flame"

    def __init__(self, folder: str | Path, fps: float | None = None):
        self.folder, self.fps = Path(folder), fps

    def generate(self) -> ParamSequence:
        return read_sequence(self.folder, fps=self.fps)


class SubjectDriver:
    """Another subject's tracked motion (today's cross-reenactment), as a sequence."""

    def __init__(self, name_or_path: str, *, split: str | None = None, scale: float = 1.0, fps: float = DEFAULT_FPS):
        self.source, self.split, self.scale, self.fps = name_or_path, split, scale, fps
        self.body_model = "flame"

    def generate(self) -> ParamSequence:
        from avatarbench.data import load_subject
        from avatarbench.data.splits import _driver_frames

        subj = load_subject(self.source, scale=self.scale)
        self.body_model = subj.body_model
        split = self.split or (subj.sequences()[0] if len(subj.sequences()) == 1 else "self_reenact")
        by_t = {}
        for f in _driver_frames(subj, split):
            by_t.setdefault(f.timestep, f)
        ts = sorted(by_t)
        first = dict(by_t[ts[0]].driving)
        keys = [k for k in first if k not in ("shape", "static_offset", "dynamic_offset", "betas")]
        params = {k: np.stack([np.asarray(by_t[t].driving[k], np.float32).reshape(-1) for t in ts]) for k in keys}
        return ParamSequence(subj.body_model, self.fps, params, None,
                             {"driver": "subject", "source": subj.name, "split": split, "timesteps": ts})


def make_driver(spec: str, *, fps: float = DEFAULT_FPS, model=None, split: str | None = None,
                scale: float = 1.0, seed: int = 0):
    """Parse a ``data.driver`` string (see module docstring) into a driver."""
    spec = str(spec).strip()
    if not spec:
        raise ConfigError("data.driver is empty (expected a subject, params:FOLDER, text:..., or audio:FILE.wav)")
    if spec.startswith("text:"):
        from avatarbench.drivers.speech_face import SpeechFaceDriver

        return SpeechFaceDriver(text=spec[5:], fps=fps, model=model, seed=seed)
    if spec.startswith("audio:"):
        from avatarbench.drivers.speech_face import SpeechFaceDriver

        path, _, transcript = spec[6:].partition("|")
        return SpeechFaceDriver(audio=path, transcript=transcript or None, fps=fps, model=model, seed=seed)
    if spec.startswith("params:"):
        return SequenceDriver(spec[7:], fps=None)
    p = Path(spec)
    if (p / "sequence.json").is_file() or p.name == "flame_param":
        return SequenceDriver(p)  # a written sequence (FLAME or SMPL-X)
    return SubjectDriver(spec, split=split, scale=scale, fps=fps)


def is_generated_driver(spec) -> bool:
    """True for drivers that are not a subject (text, audio, params folders)."""
    if spec is None:
        return False
    s = str(spec)
    return s.startswith(("text:", "audio:", "params:")) or (Path(s) / "sequence.json").is_file() or \
        Path(s).name == "flame_param"
