"""``avatarbench run``: resolve the config, train (or resume), render the split, score it.

Nothing is overwritten silently:

- a run folder whose saved training config differs from the requested one is refused
  (use another ``--output``);
- an interrupted training resumes from its newest checkpoint;
- a finished training is reused, so evaluating another split does not retrain;
- a split that already has results is not re-scored: its existing record is returned.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from avatarbench.engine.config import RunRequest, resolve_config, training_identity
from avatarbench.engine.registry import get_spec, load_method_class
from avatarbench.errors import ConfigError, RunExistsError
from avatarbench.results.store import config_sha, environment_info, now_iso, run_folder, write_json

DEFAULT_DRIVERS = {"synth_head_a": "synth_head_b", "synth_head": "synth_head_b", "synth_head_b": "synth_head_a",
                   "synth_body_a": "synth_body_b", "synth_body": "synth_body_b", "synth_body_b": "synth_body_a"}


@dataclass
class RunOutcome:
    run_dir: Path
    eval_dir: Path
    results: dict
    reused: bool


def load_run_subject(cfg):
    from avatarbench.data import load_subject

    source = cfg.data.path or cfg.data.subject
    return load_subject(source, scale=float(cfg.data.scale))


def train_frames_for(subject, cfg) -> list:
    """The training frames after the view-count / timestep limits of ``cfg.data``."""
    if cfg.data.num_train_views:
        from avatarbench.data.splits import subset_train_views

        subject = subset_train_views(subject, int(cfg.data.num_train_views))
    frames = subject.frames("train")
    if cfg.data.max_train_timesteps:
        keep = set(subject.timesteps("train")[: int(cfg.data.max_train_timesteps)])
        frames = [f for f in frames if f.timestep in keep]
    return frames


def split_frames(subject, cfg) -> list:
    split = cfg.run.split
    if split == "cross_reenact":
        from avatarbench.data import load_subject
        from avatarbench.data.splits import cross_reenact_frames

        driver_name = cfg.data.driver or DEFAULT_DRIVERS.get(str(cfg.data.subject) if not cfg.data.path else "")
        from avatarbench.drivers.base import is_generated_driver

        if is_generated_driver(driver_name):  # text:, audio:, params: drivers (avatarbench.drivers)
            frames = generated_driver_frames(subject, str(driver_name), cfg)
            return frames[: int(cfg.protocol.max_frames)] if cfg.protocol.max_frames else frames
        if not driver_name:
            raise ConfigError("cross_reenact needs a driving subject: --set data.driver=NAME_OR_PATH")
        driver = load_subject(driver_name, scale=float(cfg.data.scale))
        # a single-sequence driver (e.g. a FREE folder) drives with the whole sequence; a union
        # drives with its held-out (self_reenact) sequence
        driver_split = cfg.data.driver_split or (driver.sequences()[0] if len(driver.sequences()) == 1
                                                 else "self_reenact")
        frames = cross_reenact_frames(subject, driver, driver_split=driver_split)
    else:
        frames = subject.frames(split)
    if cfg.protocol.max_frames:
        frames = frames[: int(cfg.protocol.max_frames)]
    return frames


def generated_driver_frames(subject, spec: str, cfg) -> list:
    """Frames of ``subject`` driven by a text / audio / parameter-folder driver (see docs/drivers.md)."""
    from avatarbench.drivers.base import make_driver
    from avatarbench.drivers.frames import driven_frames

    if subject.body_model != "flame" and not spec.startswith("params:"):
        raise ConfigError(f"data.driver={spec!r}: text/audio drivers drive FLAME heads (bodies: "
                          f"`avatarbench say`, then data.driver=params:FOLDER); subject {subject.name!r} "
                          f"uses {subject.body_model}")
    seq = make_driver(spec, seed=int(cfg.engine.seed)).generate()
    # one camera, the target's first test camera (as `avatarbench say`): max_frames then covers the
    # utterance in time, which the lip-sync and flicker metrics need
    test = subject.frames("self_reenact") if "self_reenact" in subject.split_names else []
    cams = [test[0].camera.id] if test else None
    return driven_frames(subject, seq, cameras=cams, name=spec.split(":", 1)[0])


def prepare_run_dir(cfg, subject_name: str, output: Path | None) -> Path:
    root = Path(cfg.output.root)
    run_dir = Path(output) if output else run_folder(root, subject_name, cfg.run.method, cfg.run.ablation,
                                                     cfg.run.preset, int(cfg.engine.seed))
    identity = training_identity(cfg)
    sha = config_sha(identity)
    meta_path = run_dir / "run.json"
    if meta_path.exists():
        saved = json.loads(meta_path.read_text())
        if saved.get("config_sha") != sha:
            old = saved.get("identity", {})
            diff = sorted(_diff_keys(old, identity))
            raise RunExistsError(f"{run_dir} holds a run with a different training config (differs in: "
                                 f"{', '.join(diff[:6]) or 'unknown'}); choose another --output")
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunExistsError(f"{run_dir} exists and is not an avatarbench run folder; choose another --output")
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml")
    write_json(meta_path, {"method": cfg.run.method, "ablation": cfg.run.ablation, "preset": cfg.run.preset,
                           "subject": subject_name, "config_sha": sha, "created": now_iso(), "identity": identity})
    return run_dir


@contextmanager
def training_lock(run_dir: Path):
    """An exclusive advisory lock on ``<run>/train.lock`` (POSIX flock)."""
    import fcntl

    with open(Path(run_dir) / "train.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _diff_keys(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in set(a) | set(b):
            yield from _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
    elif a != b:
        yield prefix.rstrip(".")


def execute(req: RunRequest, output: Path | None = None, *, echo=print, stop_after: int | None = None,
            progress: bool = True) -> RunOutcome:
    """Run a request end to end. ``stop_after`` interrupts training (tests of resume)."""
    from avatarbench.engine.evaluate import render_frames, score_frames, score_geometry, sha256_of_files, \
        summarize, write_videos
    from avatarbench.engine.logging import RunLogger
    from avatarbench.engine.trainer import seed_everything, select_device, train

    cfg = resolve_config(req)
    if not progress:
        cfg.engine.progress = False
    spec = get_spec(req.method)
    subject = load_run_subject(cfg)
    if subject.kind != spec.kind:
        raise ConfigError(f"method {req.method} is a {spec.kind} method but subject {subject.name!r} is a "
                          f"{subject.kind} subject")
    run_dir = prepare_run_dir(cfg, subject.name, output)
    eval_dir = run_dir / "eval" / cfg.run.split
    if (eval_dir / "results.json").exists():
        echo(f"{eval_dir} already has results; not re-scoring (use another --output for a fresh run)")
        return RunOutcome(run_dir, eval_dir, json.loads((eval_dir / "results.json").read_text()), True)

    device = select_device(cfg.engine.device)
    from avatarbench.render import set_default_backend

    set_default_backend(str(cfg.render.backend))
    if cfg.engine.num_threads:
        torch.set_num_threads(int(cfg.engine.num_threads))
    write_json(run_dir / "environment.json", environment_info(device))
    seed_everything(int(cfg.engine.seed))
    method = load_method_class(req.method)(cfg.method, subject, device)
    train_frames = train_frames_for(subject, cfg)
    method.setup(train_frames)
    eval_frames = subject.frames("novel_view")[: int(cfg.engine.eval_frames)] if "novel_view" in \
        subject.split_names else []
    with training_lock(run_dir):  # jobs of other splits wait, then reuse the trained model
        logger = RunLogger(run_dir, cfg.engine.wandb, OmegaConf.to_container(cfg, resolve=True),
                           name=f"{subject.name}/{req.method}")
        try:
            tr = train(method, train_frames, cfg, run_dir, eval_frames=eval_frames, logger=logger,
                       stop_after=stop_after)
        finally:
            logger.close()
    if tr.resumed_from is not None:
        echo(f"reusing the trained model (step {tr.resumed_from})" if tr.resumed_from >= method.total_iterations()
             else f"resumed from step {tr.resumed_from}")
    if tr.steps < method.total_iterations():
        echo(f"stopped at step {tr.steps} of {method.total_iterations()} (checkpoint saved)")
        return RunOutcome(run_dir, eval_dir, {}, False)
    method.export(run_dir / "export", None)

    frames = split_frames(subject, cfg)
    tmp_dir = eval_dir.with_name(eval_dir.name + ".partial")
    if tmp_dir.exists():
        import shutil

        shutil.rmtree(tmp_dir)
    renders, times = render_frames(method, frames, tmp_dir, progress=bool(cfg.engine.progress))
    videos = write_videos(frames, tmp_dir) if (cfg.output.save_videos and cfg.run.split != "novel_view") else []
    per_image = score_frames(frames, renders, cfg.protocol, tmp_dir) if cfg.protocol.has_gt else None
    geometry = score_geometry(method, subject, frames) if cfg.protocol.has_gt else None
    results = {
        "method": req.method, "variant": req.ablation or "full", "preset": req.preset, "subject": subject.name,
        "split": cfg.run.split, "kind": subject.kind, "dataset": subject.meta.get("dataset", "unknown"),
        "synthetic": bool(subject.meta.get("synthetic", False)),
        "resolution": [frames[0].camera.width, frames[0].camera.height] if frames else None,
        "num_frames": len(frames), "num_gaussians": method.num_gaussians(),
        "train": {"iterations": tr.steps, "seconds": tr.train_seconds, "activity": method.activity()},
        "render": {"seconds_per_frame": float(sum(times) / max(1, len(times))),
                   "fps": float(len(times) / max(1e-9, sum(times)))},
        "metrics": {}, "geometry": {}, "protocol": OmegaConf.to_container(cfg.protocol, resolve=True),
        "config_sha": json.loads((run_dir / "run.json").read_text())["config_sha"], "created": now_iso(),
        "videos": [str(p.relative_to(tmp_dir)) for p in videos],
    }
    if cfg.run.split == "cross_reenact" and frames:  # no GT: flicker, lip sync (avatarbench.drivers.run_metrics)
        from avatarbench.drivers.run_metrics import reenact_metrics

        results["metrics"].update(reenact_metrics(frames, renders, subject, cfg))
        results["driver"] = str(cfg.data.driver) if cfg.data.driver else None
    if getattr(method, "perceptual_loss_status", None) is not None:  # GHA, Animatable Gaussians
        results["perceptual_loss"] = method.perceptual_loss_status
    if per_image is not None and len(per_image):
        per_image.to_csv(tmp_dir / "metrics_per_image.csv", index=False)
        results["metrics"] = summarize(per_image)
        results["per_image_sha256"] = sha256_of_files([tmp_dir / "metrics_per_image.csv"])
        from avatarbench.metrics.protocol import EvalProtocol

        results["lpips_status"] = EvalProtocol.from_config(cfg.protocol).lpips_status()
    if geometry is not None:
        geometry.to_csv(tmp_dir / "metrics_geometry.csv", index=False)
        results["geometry"] = summarize(geometry)
    results["renders_sha256"] = sha256_of_files(list((tmp_dir / "renders").glob("**/*.png")))
    write_json(tmp_dir / "results.json", results)
    tmp_dir.rename(eval_dir)
    return RunOutcome(run_dir, eval_dir, results, False)


def format_summary(outcome: RunOutcome) -> str:
    r = outcome.results
    if not r:
        return f"run folder: {outcome.run_dir} (training not finished)"
    lines = [f"{r['method']} ({r['variant']}, {r['preset']}) on {r['subject']} / {r['split']}: "
             f"{r['num_frames']} frames, {r['num_gaussians']} Gaussians"]
    m = r.get("metrics", {})
    if m and "psnr" not in m:  # cross-reenactment: no ground truth, only the no-GT metrics
        m = {}
        lines.append("  " + ", ".join(f"{k} {v:.4g}" for k, v in r["metrics"].items()))
    if m:
        parts = [f"PSNR {m['psnr']:.2f} dB" if m.get("psnr") is not None else "PSNR n/a",
                 f"SSIM {m['ssim']:.4f}" if m.get("ssim") is not None else "SSIM n/a"]
        unavailable = []
        for net in ("alex", "vgg"):
            key = f"lpips_{net}"
            if key in m:
                if m[key] is not None:
                    parts.append(f"LPIPS-{net} {m[key]:.4f}")
                else:
                    unavailable.append(net)
        if unavailable:
            status = r.get("lpips_status", {})
            reason = next((status.get(n, {}).get("reason") for n in unavailable if isinstance(status.get(n), dict)),
                          None) or "backbone weights absent"
            parts.append(f"LPIPS ({'/'.join(unavailable)}) unavailable: {reason.split('. ')[0]} "
                         "(see README: LPIPS backbones)")
        lines.append("  " + ", ".join(parts))
    else:
        lines.append("  no ground truth for this split: renders and videos only")
    g = r.get("geometry") or {}
    if g:
        shown = {k: g[k] for k in ("p2m_mean_mm", "chamfer_mm") if g.get(k) is not None}
        lines.append("  geometry vs GT mesh: " + ", ".join(f"{k} {v:.3f}" for k, v in shown.items()))
    lines.append(f"  results: {outcome.eval_dir / 'results.json'}")
    return "\n".join(lines)

