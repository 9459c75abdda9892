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
from avatarbench.errors import ConfigError, RunExistsError, WriteError
from avatarbench.results.store import config_sha, environment_info, now_iso, run_folder, write_json

DEFAULT_DRIVERS = {"synth_head_a": "synth_head_b", "synth_head": "synth_head_b", "synth_head_b": "synth_head_a",
                   "synth_body_a": "synth_body_b", "synth_body": "synth_body_b", "synth_body_b": "synth_body_a"}


def default_driver(subject: str) -> str | None:
    """The cross-reenactment driver of a synthetic subject; a world suffix carries over
    (``synth_head_a_full`` -> ``synth_head_b_full``)."""
    if subject in DEFAULT_DRIVERS:
        return DEFAULT_DRIVERS[subject]
    for base in sorted(DEFAULT_DRIVERS, key=len, reverse=True):
        if subject.startswith(base + "_"):
            return DEFAULT_DRIVERS[base] + subject[len(base):]
    return None


@dataclass
class RunOutcome:
    run_dir: Path
    eval_dir: Path
    results: dict
    reused: bool


def load_run_subject(cfg):
    from avatarbench.data import load_subject

    source = cfg.data.path or cfg.data.subject
    preset = cfg.data.get("synthetic_preset") if not cfg.data.path else None
    extra = {"protocol": str(cfg.data.protocol)} if cfg.data.get("protocol") else {}
    if preset:
        extra["preset"] = str(preset)
    return load_subject(source, scale=float(cfg.data.scale), **extra)


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

        driver_name = cfg.data.driver or default_driver(str(cfg.data.subject) if not cfg.data.path else "")
        from avatarbench.drivers.base import is_generated_driver

        if is_generated_driver(driver_name):  # text:, audio:, params: drivers (avatarbench.drivers)
            frames = generated_driver_frames(subject, str(driver_name), cfg)
            return frames[: int(cfg.protocol.max_frames)] if cfg.protocol.max_frames else frames
        if not driver_name:
            raise ConfigError("cross_reenact needs a driving subject: --set data.driver=NAME_OR_PATH")
        sp = cfg.data.get("synthetic_preset")
        driver = load_subject(driver_name, scale=float(cfg.data.scale), **({"preset": str(sp)} if sp else {}))
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


def planned_run_dir(cfg, subject_name: str, output: Path | None) -> Path:
    """Where the run folder of ``cfg`` lives (``--output`` or the results-store layout)."""
    if output:
        return Path(output)
    return run_folder(Path(cfg.output.root), subject_name, cfg.run.method, cfg.run.ablation, cfg.run.preset,
                      int(cfg.engine.seed))


#: what a folder holds before its first checkpoint: safe to take over when training never started
_PRE_TRAINING_FILES = {"config.yaml", "run.json", "environment.json", "train.lock", "train_log.jsonl",
                       "train_log.csv", "wandb", "checkpoints", "eval"}


def _has_training(run_dir: Path) -> bool:
    from avatarbench.engine.checkpoint import list_checkpoints

    return bool(list_checkpoints(run_dir)) or any((run_dir / "eval").glob("*/results.json"))


def _is_locked(run_dir: Path) -> bool:
    """True while another process holds ``<run>/train.lock`` (a training in progress)."""
    import fcntl

    lock = run_dir / "train.lock"
    if not lock.exists():
        return False
    try:
        with open(lock, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def check_output_location(run_dir: Path) -> None:
    """Refuse (before anything is written) an output that is a file or lies below a file."""
    for p in [run_dir, *run_dir.parents]:
        if p.exists():
            if not p.is_dir():
                what = "--output" if p == run_dir else f"a parent of {run_dir}"
                raise RunExistsError(f"{p}: {what} is a file, not a folder; choose another --output")
            break


def _saved_matches(saved: dict, sha: str) -> bool:
    from avatarbench.engine.config import strip_identity

    if saved.get("config_sha") == sha:
        return True
    old = saved.get("identity")
    return isinstance(old, dict) and config_sha(strip_identity(old)) == sha


def _write_identity(folder: Path, cfg, meta: dict) -> None:
    from avatarbench.results.durable import durable_write_bytes

    durable_write_bytes(folder / "config.yaml", OmegaConf.to_yaml(cfg).encode())
    write_json(folder / "run.json", meta)


def prepare_run_dir(cfg, subject_name: str, output: Path | None, echo=None) -> Path:
    """Create (atomically) or validate the run folder of ``cfg``.

    - an existing folder with the same training identity is reused (resume / other splits);
    - an existing folder with another identity is refused -- unless it never trained (no
      checkpoint, no results, no training in progress): a crash or a bad option before training
      leaves such a folder, and the corrected command takes it over;
    - a new folder is created as ``.<name>.creating-<pid>`` next to its final place, filled with
      ``config.yaml`` and ``run.json`` and renamed into place in one step, so a folder under the
      final name always holds a complete ``run.json``.
    """
    import errno
    import os
    import shutil

    run_dir = planned_run_dir(cfg, subject_name, output)
    check_output_location(run_dir)
    identity = training_identity(cfg)
    sha = config_sha(identity)
    meta = {"method": cfg.run.method, "ablation": cfg.run.ablation, "preset": cfg.run.preset,
            "subject": subject_name, "config_sha": sha, "created": now_iso(), "identity": identity}
    if run_dir.parent.is_dir():
        for old in run_dir.parent.glob(f".{run_dir.name}.creating-*"):  # left by a crash during creation
            pid = old.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
    for _attempt in range(3):
        meta_path = run_dir / "run.json"
        if meta_path.exists():
            try:
                saved = json.loads(meta_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                saved = {}
            if _saved_matches(saved, sha):
                return run_dir
            if not _has_training(run_dir) and not _is_locked(run_dir):
                if echo is not None:
                    echo(f"{run_dir} holds a run that never trained (another config); reusing the folder")
                _write_identity(run_dir, cfg, meta)
                return run_dir
            diff = sorted(_diff_keys(saved.get("identity", {}), identity))
            raise RunExistsError(f"{run_dir} holds a run with a different training config (differs in: "
                                 f"{', '.join(diff[:6]) or 'unknown'}); choose another --output")
        if run_dir.is_dir() and any(run_dir.iterdir()):
            names = {p.name for p in run_dir.iterdir()}
            if names <= _PRE_TRAINING_FILES and not _has_training(run_dir) and not _is_locked(run_dir):
                _write_identity(run_dir, cfg, meta)  # left by a crash before run.json existed
                return run_dir
            raise RunExistsError(f"{run_dir} exists and is not an avatarbench run folder; choose another --output")
        parent = run_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".{run_dir.name}.creating-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            _write_identity(tmp, cfg, meta)
            os.rename(tmp, run_dir)  # atomic; fails if another process created a non-empty folder first
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                continue  # lost the race: validate the winner's folder
            raise
        from avatarbench.results.durable import fsync_dir

        fsync_dir(parent)
        return run_dir
    raise RunExistsError(f"{run_dir}: could not create the run folder (it keeps changing); try again")


def _pid_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def file_lock(path: Path):
    """An exclusive advisory lock on ``path`` (POSIX flock), released on exit or process death."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def training_lock(run_dir: Path):
    """The lock on ``<run>/train.lock`` held while training (jobs of other splits wait on it)."""
    return file_lock(Path(run_dir) / "train.lock")


def _diff_keys(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in set(a) | set(b):
            yield from _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
    elif a != b:
        yield prefix.rstrip(".")


@contextmanager
def writing(what: str, path: Path):
    """Turn an ``OSError`` while writing ``what`` into one :class:`WriteError` line naming the path."""
    try:
        yield
    except OSError as e:
        raise WriteError.from_oserror(e, what, path) from None


def execute(req: RunRequest, output: Path | None = None, *, echo=print, stop_after: int | None = None,
            progress: bool = True) -> RunOutcome:
    """Run a request end to end. ``stop_after`` interrupts training (tests of resume).

    Everything that can be checked is checked before the run folder is created: the config
    (types, ranges), the device, the subject, the output location, the method (its body model
    and total iterations).
    """
    from avatarbench.engine.config import check_total_iterations, validate_config
    from avatarbench.engine.logging import RunLogger
    from avatarbench.engine.trainer import seed_everything, select_device, train

    cfg = resolve_config(req)
    if not progress:
        cfg.engine.progress = False
    validate_config(cfg)
    spec = get_spec(req.method)
    device = select_device(cfg.engine.device)
    subject = load_run_subject(cfg)
    if subject.kind != spec.kind:
        raise ConfigError(f"method {req.method} is a {spec.kind} method but subject {subject.name!r} is a "
                          f"{subject.kind} subject")
    planned = planned_run_dir(cfg, subject.name, output)
    check_output_location(planned)
    eval_dir = planned / "eval" / cfg.run.split
    if (eval_dir / "results.json").exists() and (planned / "run.json").exists():
        prepare_run_dir(cfg, subject.name, output, echo)  # refuses another config
        echo(f"{eval_dir} already has results; not re-scoring (use another --output for a fresh run)")
        return RunOutcome(planned, eval_dir, json.loads((eval_dir / "results.json").read_text()), True)

    # frames and image headers before seeding, so the RNG stream from the seed on is unchanged
    train_frames = train_frames_for(subject, cfg)
    frames = split_frames(subject, cfg)
    from avatarbench.data.check import check_frame_sizes

    check_frame_sizes(train_frames + frames)  # header reads: a wrong-size image stops the run before training

    from avatarbench.render import set_default_backend

    set_default_backend(str(cfg.render.backend))
    if cfg.engine.num_threads:
        torch.set_num_threads(int(cfg.engine.num_threads))
    seed_everything(int(cfg.engine.seed))
    method = load_method_class(req.method)(cfg.method, subject, device)
    check_total_iterations(cfg, method.total_iterations())
    method.setup(train_frames)
    eval_frames = subject.frames("novel_view")[: int(cfg.engine.eval_frames)] if "novel_view" in \
        subject.split_names else []
    with writing("the run folder", planned):
        run_dir = prepare_run_dir(cfg, subject.name, output, echo)
    with training_lock(run_dir):  # jobs of other splits wait, then reuse the trained model
        env_path = run_dir / "environment.json"
        if not env_path.exists():  # the training environment; later commands never overwrite it
            with writing("the environment record", env_path):
                write_json(env_path, environment_info(device))
        logger = RunLogger(run_dir, cfg.engine.wandb, OmegaConf.to_container(cfg, resolve=True),
                           name=f"{subject.name}/{req.method}", echo=echo)
        try:
            with writing("a checkpoint or the training log", run_dir):
                tr = train(method, train_frames, cfg, run_dir, eval_frames=eval_frames, logger=logger,
                           stop_after=stop_after, echo=echo)
        finally:
            logger.close()
    if tr.resumed_from is not None:
        echo(f"reusing the trained model (step {tr.resumed_from})" if tr.resumed_from >= method.total_iterations()
             else f"resumed from step {tr.resumed_from}")
    if tr.steps < method.total_iterations():
        echo(f"stopped at step {tr.steps} of {method.total_iterations()} (checkpoint saved)")
        return RunOutcome(run_dir, eval_dir, {}, False)
    with writing("the method export", run_dir / "export"):
        method.export(run_dir / "export", None)

    # one evaluation per split at a time: a second identical command waits, then reuses the result
    with file_lock(run_dir / "eval" / f".{cfg.run.split}.lock"):
        if (eval_dir / "results.json").exists():
            echo(f"{eval_dir} already has results; not re-scoring (use another --output for a fresh run)")
            return RunOutcome(run_dir, eval_dir, json.loads((eval_dir / "results.json").read_text()), True)
        tmp_dir = eval_dir.with_name(eval_dir.name + ".partial")
        with writing(f"the {cfg.run.split} evaluation", tmp_dir), _removed_on_error(tmp_dir):
            results = _evaluate(req, cfg, method, subject, frames, tr, run_dir, tmp_dir, device)
            tmp_dir.rename(eval_dir)
            from avatarbench.results.durable import fsync_dir

            fsync_dir(eval_dir.parent)
    return RunOutcome(run_dir, eval_dir, results, False)


@contextmanager
def _removed_on_error(folder: Path):
    """Remove a half-written folder when its block fails (disk full, Ctrl-C): no partial results stay."""
    try:
        yield
    except BaseException:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        raise


def _evaluate(req, cfg, method, subject, frames, tr, run_dir: Path, tmp_dir: Path, device) -> dict:
    """Render and score the split into ``tmp_dir`` (renamed into place by the caller)."""
    import shutil

    from avatarbench.engine.evaluate import render_frames, score_frames, score_geometry, sha256_of_files, \
        summarize, write_videos

    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    renders, times = render_frames(method, frames, tmp_dir, progress=bool(cfg.engine.progress))
    videos = write_videos(frames, tmp_dir) if (cfg.output.save_videos and cfg.run.split != "novel_view") else []
    show = bool(cfg.engine.progress)
    per_image = score_frames(frames, renders, cfg.protocol, tmp_dir, progress=show) if cfg.protocol.has_gt else None
    geometry = score_geometry(method, subject, frames, progress=show) if cfg.protocol.has_gt else None
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
    write_json(tmp_dir / "environment.json", environment_info(device))  # this evaluation's environment
    write_json(tmp_dir / "results.json", results)
    return results


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
            import re

            reason = re.sub(r"(?:/[^/\s]+)+/([^/\s]+)", r"\1", reason.split(". ")[0])  # paths -> file names
            parts.append(f"LPIPS ({'/'.join(unavailable)}) n/a: {reason} (README: LPIPS backbones)")
        lines.append("  " + ", ".join(parts))
    else:
        lines.append("  no ground truth for this split: renders and videos only")
    g = r.get("geometry") or {}
    if g:
        shown = {k: g[k] for k in ("p2m_mean_mm", "chamfer_mm") if g.get(k) is not None}
        lines.append("  geometry vs GT mesh: " + ", ".join(f"{k} {v:.3f}" for k, v in shown.items()))
        if shown.get("p2m_mean_mm") is not None and abs(shown["p2m_mean_mm"]) < 5e-4:
            lines.append("    (p2m 0.000 is exact: the Gaussian centres lie on the very mesh that rendered the "
                         "ground truth, so a mesh-bound method scores 0 by construction)")
    tr = r.get("train") or {}
    if tr.get("seconds") is not None:
        lines.append(f"  training: {tr.get('iterations')} iterations in {format_seconds(float(tr['seconds']))}"
                     f" (log: {outcome.run_dir / 'train_log.csv'})")
    renders = outcome.eval_dir / "renders"
    if renders.is_dir():
        n_png = sum(1 for _ in renders.glob("**/*.png"))
        lines.append(f"  renders: {renders} ({n_png} PNG)")
    if r.get("videos"):
        lines.append(f"  videos: {outcome.eval_dir / 'videos'} ({len(r['videos'])} MP4, one per camera)")
    lines.append(f"  results: {outcome.eval_dir / 'results.json'}")
    return "\n".join(lines)


def format_seconds(s: float) -> str:
    """``42.0 s``, ``6 min 12 s``, ``2 h 05 min``."""
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"

