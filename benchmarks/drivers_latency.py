"""Speech-driver latency and audio-only quality (CLI).

    python benchmarks/drivers_latency.py [--run RUN_DIR] [--json results/bench/drivers_latency.json]

Per utterance (three lengths): eSpeak NG synthesis time, FLAME parameter generation time (viseme
fits cached) per second of speech, for the text path and the audio-only path; the one-off
geometric viseme fit (uncached). Quality of the audio-only path: lip-sync correlation of its
geometric mouth opening with the phoneme timeline, next to the text path's. With ``--run``, the
latency from text to the first rendered frame of that run's avatar (one frame rendered).
All on the default FLAME (the stand-in unless ``$AVATARBENCH_FLAME_MODEL`` is set).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

TEXTS = {
    "short": "Hello there.",
    "medium": "Hello world, this is a test of the speech driven avatar.",
    "long": ("Gaussian avatars can now be driven by text. The text goes through speech synthesis, the speech "
             "drives the face, and the face drives the avatar, one frame after the other."),
}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="a trained head run folder (text -> first frame)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--fps", type=float, default=25.0)
    args = ap.parse_args(argv)

    import torch

    from avatarbench.bodymodels.flame import load_flame
    from avatarbench.drivers.audio import write_wav
    from avatarbench.drivers.flame_fit import viseme_basis
    from avatarbench.drivers.lipsync import lip_sync, mouth_opening_series, phoneme_opening
    from avatarbench.drivers.speech_face import SpeechFaceDriver
    from avatarbench.drivers.tts import synthesize

    torch.set_num_threads(1)
    model = load_flame(teeth=True)
    t = time.perf_counter()
    viseme_basis(model, disk_cache=False)
    fit_s = time.perf_counter() - t
    synthesize("warm up")  # library load + init, once per process
    SpeechFaceDriver(text="warm up", model=model).generate()
    rows = []
    import tempfile

    for name, text in TEXTS.items():
        d = SpeechFaceDriver(text=text, model=model, fps=args.fps)
        t = time.perf_counter()
        sp = d.speech()
        tts_s = time.perf_counter() - t
        seq = d.generate(sp)
        T = len(seq)
        times = np.arange(T) / args.fps
        ref = phoneme_opening(sp.phonemes, times)
        with tempfile.TemporaryDirectory() as tmp:
            wav = write_wav(Path(tmp) / "a.wav", sp.audio, sp.sample_rate)
            da = SpeechFaceDriver(audio=wav, model=model, fps=args.fps)
            t = time.perf_counter()
            sa = da.generate()
            audio_params_s = time.perf_counter() - t
        m_text = mouth_opening_series(model, seq.params)
        m_audio = mouth_opening_series(model, sa.params)
        rows.append({
            "utterance": name, "characters": len(text), "speech_seconds": sp.duration, "frames": T,
            "tts_s": tts_s, "tts_s_per_speech_s": tts_s / sp.duration,
            "text_params_s_per_speech_s": d.timings["params_s"] / sp.duration,
            "audio_params_s_per_speech_s": audio_params_s / sp.duration,
            "lip_sync_text_vs_phonemes": lip_sync(m_text, ref, args.fps),
            "lip_sync_audio_only_vs_phonemes": lip_sync(m_audio, ref, args.fps),
        })
    out = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "torch_threads": 1,
           "flame": "stand-in" if model.is_synthetic else str(model.source), "fps": args.fps,
           "viseme_fit_once_s": fit_s, "utterances": rows}
    if args.run:
        from avatarbench.drivers.frames import driven_frames
        from avatarbench.engine.reproduce import _load_method

        cfg, subject, method, _, _ = _load_method(Path(args.run))
        d = SpeechFaceDriver(text=TEXTS["medium"], model=model, fps=args.fps)
        t = time.perf_counter()
        seq = d.generate()
        f = driven_frames(subject, seq, cameras=[sorted(subject.cameras)[0]])[0]
        with torch.no_grad():
            method.render(f)
        out["text_to_first_frame"] = {"run": str(args.run), "method": cfg.run.method,
                                      "resolution": [f.camera.width, f.camera.height],
                                      "seconds": time.perf_counter() - t}
    text = json.dumps(out, indent=2, default=float)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    print(text)
    return out


if __name__ == "__main__":
    main()
