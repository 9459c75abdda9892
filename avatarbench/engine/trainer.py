"""The shared training loop: seeds, device, progress bar, periodic evaluation, checkpoints, resume.

Resuming is exact: the checkpoint holds the method state (parameters, optimisers, strategy,
fine-tuned driving parameters), the frame sampler and every RNG state, so an interrupted run
continued from its last checkpoint produces the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avatarbench.data.subject import Frame
from avatarbench.engine.checkpoint import load_latest_valid, rng_state, save_checkpoint, set_rng_state
from avatarbench.engine.image_cache import ImageCache
from avatarbench.engine.logging import RunLogger
from avatarbench.engine.method import AvatarMethod, Sample
from avatarbench.engine.sampler import FrameSampler


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def select_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from avatarbench.errors import ConfigError

        raise ConfigError(f"engine.device={name}: CUDA is not available on this machine (use cpu or auto)")
    return dev


@dataclass
class TrainResult:
    steps: int
    train_seconds: float
    resumed_from: int | None
    checkpoint: Path | None


def checkpoint_interval(cfg, total: int) -> int:
    every = int(cfg.engine.checkpoint_every or 0)
    if every <= 0:
        every = max(1, total // 10)
    return every


def train(method: AvatarMethod, train_frames: list[Frame], cfg, run_dir: Path, *,
          eval_frames: list[Frame] | None = None, logger: RunLogger | None = None,
          stop_after: int | None = None, echo=None) -> TrainResult:
    """Train ``method`` on ``train_frames`` (setup already done), resuming from ``run_dir``.

    Args:
        stop_after: stop (with a checkpoint) once this many steps are done -- used by tests to
            simulate an interruption.
        echo: where one-line warnings go (a corrupt newest checkpoint moved aside).
    """
    total = method.total_iterations()
    sampler = FrameSampler(len(train_frames), int(cfg.engine.seed))
    cache = ImageCache(float(cfg.data.cache_images_gb) * 1e9)
    ck_every = checkpoint_interval(cfg, total)
    start, seconds, resumed = 0, 0.0, None
    found = load_latest_valid(run_dir, echo=echo)
    ck = found[0] if found is not None else None
    if found is not None:
        payload = found[1]
        method.load_state_dict(payload["method"])
        sampler.load_state_dict(payload["sampler"])
        set_rng_state(payload["rng"])
        start, seconds, resumed = int(payload["step"]), float(payload.get("train_seconds", 0.0)), int(payload["step"])
    if logger is not None:  # rows logged after the checkpoint (or before the first one) are redone
        logger.truncate_after(start)
    if start >= total:
        return TrainResult(start, seconds, resumed, ck)

    end = total if stop_after is None else min(total, stop_after)
    progress = None
    if cfg.engine.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=total, initial=start, desc=f"train {method.name}", dynamic_ncols=True,
                        mininterval=1.0, leave=False)
    log_every = max(1, int(cfg.engine.log_every))
    eval_every = int(cfg.engine.eval_every or 0)
    last_ck = ck
    t0 = time.perf_counter()
    for step in range(start, end):
        frame = train_frames[sampler.next()]
        image, mask = cache.get(frame, method.device)
        logs = method.train_step(Sample(frame=frame, image=image, mask=mask), step)
        done = step + 1
        if logger is not None and (done % log_every == 0 or done == total):
            row = {k: v for k, v in logs.items()}
            row.update(stage=method.stage_at(step).name, num_gaussians=method.num_gaussians(),
                       train_seconds=seconds + time.perf_counter() - t0)
            if eval_frames and eval_every > 0 and done % eval_every == 0:
                row["eval_psnr"] = quick_psnr(method, eval_frames)
            logger.log(done, row)
        if progress is not None:
            progress.update(1)
            if done % log_every == 0:
                progress.set_postfix(loss=f"{float(logs.get('loss', float('nan'))):.4f}",
                                     stage=method.stage_at(step).name, n=method.num_gaussians())
        if done % ck_every == 0 or done == end:
            elapsed = seconds + time.perf_counter() - t0
            last_ck = save_checkpoint(run_dir, done, {
                "step": done, "method": method.state_dict(), "sampler": sampler.state_dict(),
                "rng": rng_state(), "train_seconds": elapsed}, keep=int(cfg.engine.keep_checkpoints))
    if progress is not None:
        progress.close()
    return TrainResult(end, seconds + time.perf_counter() - t0, resumed, last_ck)


@torch.no_grad()
def quick_psnr(method: AvatarMethod, frames: list[Frame]) -> float:
    """Mean PSNR over a few frames (periodic evaluation for training curves)."""
    vals = []
    for f in frames:
        out = method.render(f)
        gt = f.image().to(out.rgb.device)
        mse = torch.mean((out.rgb.clamp(0, 1) - gt) ** 2)
        vals.append(float(-10 * torch.log10(mse.clamp_min(1e-12))))
    return float(np.mean(vals)) if vals else float("nan")
