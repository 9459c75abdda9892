"""Render speed of trained avatars when driven by speech (issue 16, "real time").

    python benchmarks/render_fps.py RUN_DIR [RUN_DIR ...] [--frames 25] [--json results/bench/render_fps.json]

For each run: load the newest checkpoint (as ``avatarbench say`` does), generate one utterance's
parameter sequence with the speech driver (FLAME for heads, SMPL-X for bodies), and render ``--frames``
frames of one test camera, one torch thread, after two warm-up frames. Reported per run:

- ``wall_ms_per_frame`` and ``cpu_ms_per_frame`` (median over frames): process CPU time is robust to a
  busy shared machine (it does not count time spent waiting for a core); wall time is what a viewer sees;
- ``fps_cpu`` = 1000 / cpu_ms_per_frame: frames per second on one idle core;
- ``realtime_at_25fps``: whether ``fps_cpu`` >= 25 (the driver's frame rate);
- ``params_ms_per_speech_s``: time to generate the whole utterance's parameters, per second of speech.

The markdown table (``--md``) is what ``docs/drivers.md`` quotes.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

TEXT = "Hello world, this is a test of the speech driven avatar."


def measure_run(run_dir: Path, frames: int = 25, fps: float = 25.0) -> dict:
    """Render-speed record of one run folder (see the module docstring)."""
    import torch

    from avatarbench.bodymodels.flame import FlameModel, load_flame
    from avatarbench.drivers.flame_fit import viseme_basis
    from avatarbench.drivers.frames import body_base, driven_frames
    from avatarbench.drivers.speech_body import SpeechBodyDriver
    from avatarbench.drivers.speech_face import SpeechFaceDriver
    from avatarbench.engine.reproduce import _load_method

    torch.set_num_threads(1)
    cfg, subject, method, _, _ = _load_method(run_dir)
    body = subject.kind == "body"
    model = None if body else getattr(method, "flame", None)
    if not isinstance(model, FlameModel):
        model = load_flame(teeth=True)
    model = model.cpu()
    viseme_basis(model)
    SpeechFaceDriver(text="warm up", fps=fps, model=model, seed=0).generate()  # library load, once per process
    driver = SpeechFaceDriver(text=TEXT, fps=fps, model=model, seed=0)
    if body:
        driver = SpeechBodyDriver(driver, base=body_base(subject))
    t0 = time.perf_counter()
    seq = driver.generate()
    params_s = time.perf_counter() - t0
    speech_s = seq.speech.duration
    test = [f for s in ("self_reenact", "novel_view") if s in subject.split_names for f in subject.frames(s)]
    cam = test[0].camera.id if test else sorted(subject.cameras)[0]
    fr = driven_frames(subject, seq, cameras=[cam], name="speech")
    n = min(frames, len(fr) - 2)
    walls, cpus = [], []
    with torch.no_grad():
        for i, f in enumerate(fr[: n + 2]):
            w0, c0 = time.perf_counter(), time.process_time()
            r = method.render(f)
            r.rgb.float().sum().item()  # force the work (lazy backends)
            if i >= 2:
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
    h, w = tuple(r.rgb.shape[:2])
    cpu_ms = 1000.0 * statistics.median(cpus)
    return {"run": str(run_dir), "method": str(cfg.run.method), "preset": str(cfg.run.get("preset", "") or ""),
            "subject": str(cfg.data.subject), "kind": subject.kind, "image_hw": [int(h), int(w)],
            "num_gaussians": _num_gaussians(method), "frames_timed": len(cpus),
            "wall_ms_per_frame": 1000.0 * statistics.median(walls), "cpu_ms_per_frame": cpu_ms,
            "fps_cpu": 1000.0 / cpu_ms, "realtime_at_25fps": bool(1000.0 / cpu_ms >= fps),
            "params_ms_per_speech_s": 1000.0 * params_s / max(speech_s, 1e-9), "speech_s": speech_s}


def _num_gaussians(method) -> int | None:
    """The method's Gaussian count when it reports one (informational)."""
    fn = getattr(method, "num_gaussians", None)
    return int(fn()) if callable(fn) else None


def markdown(records: list[dict]) -> str:
    lines = ["| method | run | image | CPU ms / frame | FPS (1 core) | real time at 25 fps | wall ms / frame | params ms per s of speech |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['method']} | {Path(r['run']).parent.name}/{Path(r['run']).name} | {r['image_hw'][1]}x{r['image_hw'][0]} | "
                     f"{r['cpu_ms_per_frame']:.1f} | {r['fps_cpu']:.1f} | {'yes' if r['realtime_at_25fps'] else 'no'} | "
                     f"{r['wall_ms_per_frame']:.1f} | {r['params_ms_per_speech_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    args = ap.parse_args(argv)
    recs = []
    for rd in args.runs:
        rec = measure_run(rd, frames=args.frames)
        print(json.dumps(rec), file=sys.stderr)
        recs.append(rec)
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
           "text": TEXT, "records": recs}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(markdown(recs))
    print(markdown(recs))
    return recs


if __name__ == "__main__":
    main()
