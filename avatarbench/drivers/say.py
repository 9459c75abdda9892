"""``avatarbench say``: a trained head avatar speaks text or a WAV file.

Loads the run's newest checkpoint (as ``avatarbench check`` does), generates the FLAME sequence
with :class:`~avatarbench.drivers.speech_face.SpeechFaceDriver`, renders one camera, and writes

- ``OUT.mp4``: H.264 video with the speech as an AAC audio track (ffmpeg from imageio-ffmpeg);
- ``OUT_params/``: the parameter sequence (VHAP ``flame_param`` + ``audio.wav`` +
  ``phonemes.json``), usable later as ``--set data.driver=params:OUT_params``;
- ``OUT.json``: latency (text -> first rendered frame, parameter generation per second of
  speech), lip-sync (geometry mouth opening vs audio envelope and vs phoneme timeline) and
  temporal stability (flicker in the background).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np

from avatarbench.errors import AvatarbenchError, ConfigError


def mux_audio(frames: np.ndarray, fps: float, wav: Path, out: Path) -> Path:
    """Write (T, H, W, 3) uint8 frames + a WAV file as an MP4 (H.264 + AAC)."""
    import imageio.v3 as iio
    import imageio_ffmpeg

    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    silent = out.with_suffix(".video.mp4")
    iio.imwrite(silent, frames, fps=fps, codec="libx264", macro_block_size=1)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(silent), "-i", str(wav),
           "-c:v", "copy", "-c:a", "aac", "-b:a", "128k", "-shortest", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    silent.unlink(missing_ok=True)
    if res.returncode != 0:
        raise AvatarbenchError(f"{out}: ffmpeg failed to add the audio track: {res.stderr.strip()[:200]}")
    return out


def default_camera(subject) -> int:
    """The camera ``say`` renders when none is given.

    Heads: the camera nearest the mean viewing direction of the rig (capture domes such as NeRSemble's
    face the subject from the front hemisphere, so this is the frontal camera, where the mouth is
    seen); bodies (rigs all around the subject) and rigs without a clear mean direction: the first
    test camera as before.
    """
    cams = sorted(subject.cameras)
    if subject.kind == "head" and len(cams) > 1:
        centres = []
        for cid in cams:
            w2c = np.asarray(subject.cameras[cid].world_to_cam, np.float64)
            centres.append(-w2c[:3, :3].T @ w2c[:3, 3])
        c = np.stack(centres)  # (N, 3) camera centres; heads sit near the world origin (VHAP, NeRSemble)
        dirs = c / np.linalg.norm(c, axis=1, keepdims=True)
        mean = dirs.mean(0)
        if np.linalg.norm(mean) > 0.5:  # cameras concentrated on one side: a frontal rig
            return int(cams[int(np.argmax(dirs @ (mean / np.linalg.norm(mean))))])
    test = [f for s in ("self_reenact", "novel_view") if s in subject.split_names for f in subject.frames(s)]
    return test[0].camera.id if test else cams[0]


def say(run_dir: str | Path, *, text: str | None = None, audio: str | Path | None = None,
        transcript: str | None = None, camera: int | None = None, out: str | Path | None = None,
        fps: float = 25.0, echo=print) -> dict:
    """Render the run's avatar speaking. Returns the report written to ``OUT.json``."""
    import torch

    from avatarbench.drivers.audio import envelope
    from avatarbench.drivers.base import write_sequence
    from avatarbench.drivers.frames import driven_frames
    from avatarbench.drivers.lipsync import flicker, lip_sync, mouth_opening_series, phoneme_opening
    from avatarbench.drivers.speech_face import SpeechFaceDriver
    from avatarbench.engine.reproduce import _load_method

    if (text is None) == (audio is None):
        raise ConfigError("say: give exactly one of --text or --audio")
    if text is not None and not any(ch.isalnum() for ch in text):
        raise ConfigError(f"say: --text is empty or has no letters: {text!r}")
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.yaml)")
    t_load = time.perf_counter()
    cfg, subject, method, _, _ = _load_method(run_dir)
    from avatarbench.bodymodels.flame import FlameModel, load_flame
    from avatarbench.drivers.flame_fit import viseme_basis

    body = subject.kind == "body"
    model = None if body else getattr(method, "flame", None)
    if not isinstance(model, FlameModel):
        model = load_flame(teeth=True)  # bodies: the FLAME geometry gives the mouth targets
    model = model.cpu()
    driver = SpeechFaceDriver(text=text, audio=audio, transcript=transcript, fps=fps, model=model,
                              seed=int(cfg.engine.seed))
    if body:
        from avatarbench.drivers.frames import body_base
        from avatarbench.drivers.speech_body import SpeechBodyDriver

        from avatarbench.bodymodels.smplx import SmplxModel

        smplx = getattr(method, "smplx", None)
        smplx = smplx if isinstance(smplx, SmplxModel) else None
        driver = SpeechBodyDriver(driver, base=body_base(subject), smplx=smplx)
    viseme_basis(model)  # one-off geometric fit (cached on disk), not part of the per-utterance latency
    load_s = time.perf_counter() - t_load

    t0 = time.perf_counter()
    seq = driver.generate()
    t_params = time.perf_counter()
    if camera is None:
        camera = default_camera(subject)
    frames = driven_frames(subject, seq, cameras=[camera], name="speech")
    imgs, alphas, first = [], [], None
    with torch.no_grad():
        for f in frames:
            r = method.render(f)
            imgs.append((r.rgb.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8))
            if r.alpha is not None:
                alphas.append(r.alpha.detach().float().cpu().numpy()[..., 0])
            if first is None:
                first = time.perf_counter()
    t_render = time.perf_counter()
    out = Path(out) if out else run_dir / "say" / "say.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    pdir = out.with_name(out.stem + "_params")
    from avatarbench.data.splits import identity_params

    if body:
        write_sequence(seq, pdir, identity={"betas": np.asarray(frames[0].driving["betas"], np.float32)})
    else:
        write_sequence(seq, pdir, identity={k: v for k, v in identity_params(subject).items() if k == "shape"})
    mux_audio(np.stack(imgs), fps, pdir / "audio.wav", out)

    sp = seq.speech
    T = len(seq)
    face = driver.face if body else driver
    mouth = mouth_opening_series(model, face.last.params) if body else mouth_opening_series(model, seq.params)
    env = envelope(sp.audio, sp.sample_rate, fps, T)
    render_lip_sync = None
    if not body and sp.phonemes:  # heads: mouth darkness in the renders vs the phoneme timeline
        from avatarbench.drivers.lipsync import mouth_boxes, mouth_darkness

        dark = mouth_darkness(np.stack(imgs), mouth_boxes(model, frames, imgs[0].shape[:2]))
        render_lip_sync = lip_sync(dark, phoneme_opening(sp.phonemes, np.arange(T) / fps), fps)
    report = {
        "run": str(run_dir), "method": cfg.run.method, "camera": int(camera), "fps": fps, "frames": T,
        "audio_seconds": sp.duration, "mode": seq.meta.get("mode"), "text": sp.text,
        "video": str(out), "params": str(pdir),
        "latency": {
            "model_load_and_fit_s": load_s,
            "text_to_first_frame_s": (first - t0) if first else None,
            "speech_synthesis_s": face.timings.get("speech_s"),
            "params_per_speech_second_s": (t_params - t0 - face.timings.get("speech_s", 0.0)) / max(sp.duration, 1e-9),
            "render_fps": len(imgs) / max(t_render - t_params, 1e-9),
            "realtime_factor": sp.duration / max(t_render - t0, 1e-9),
        },
        "lip_sync_audio": lip_sync(mouth, env, fps),
        "lip_sync_phonemes": lip_sync(mouth, phoneme_opening(sp.phonemes, np.arange(T) / fps), fps)
        if sp.phonemes else None,
        "lip_sync_render": render_lip_sync,
        "flicker_background": flicker(np.stack(imgs), alphas=np.stack(alphas)) if alphas else None,
    }
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=float))
    echo(f"wrote {out} ({T} frames, {sp.duration:.2f} s of speech) and {pdir}")
    return report
