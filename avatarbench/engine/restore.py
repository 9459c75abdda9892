"""Rebuild a finished run's method from its run folder (for viewers and offline tools).

The same steps as ``avatarbench run`` before training: load the saved ``config.yaml``, the
subject, seed, ``method.setup(train_frames)``, then the newest checkpoint's method state. The
checkpoint is read with ``torch.load(weights_only=True)`` (numpy RNG state allow-listed), so
opening a run folder never executes code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from avatarbench.errors import DataError


@dataclass
class TrainedRun:
    """A run folder with its method rebuilt.

    Attributes:
        run_dir: the folder.
        cfg: its resolved config (``config.yaml``).
        info: ``run.json`` (method, ablation, preset, subject, config_sha).
        subject: the loaded subject.
        method: the method with the trained state, on ``device``.
        step: training steps completed.
    """

    run_dir: Path
    cfg: object
    info: dict
    subject: object
    method: object
    step: int

    @property
    def label(self) -> str:
        abl = f"+{self.info['ablation']}" if self.info.get("ablation") else ""
        return f"{self.info.get('method', '?')}{abl} ({self.run_dir.name})"


def _numpy_safe_globals() -> list:
    core = getattr(np, "_core", None) or np.core
    dtypes = [type(np.dtype(t)) for t in ("uint8", "uint32", "int64", "float32", "float64", "bool")]
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, *dtypes]


def load_checkpoint_safe(path: Path) -> dict:
    """A checkpoint written by :func:`avatarbench.engine.checkpoint.save_checkpoint`, loaded without
    unpickling arbitrary objects (tensors, containers and numpy arrays only)."""
    from torch.serialization import safe_globals

    try:
        with safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any unpickling failure is a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(path, f"not a readable avatarbench checkpoint ({first[:160]})") from None


def read_run_info(run_dir: Path) -> tuple[object, dict]:
    """``config.yaml`` and ``run.json`` of a run folder; one-line errors for anything else."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(run_dir, "no such folder", "a run folder written by `avatarbench run`")
    if not (run_dir / "run.json").is_file() or not (run_dir / "config.yaml").is_file():
        raise DataError(run_dir, "not an avatarbench run folder (no run.json / config.yaml)",
                        "a folder written by `avatarbench run`, e.g. runs/<subject>/<method>/<preset>")
    try:
        info = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError) as e:
        raise DataError(run_dir / "run.json", f"unreadable ({e})") from None
    if not isinstance(info, dict) or "method" not in info:
        raise DataError(run_dir / "run.json", "has no 'method' field")
    try:
        cfg = OmegaConf.load(run_dir / "config.yaml")
    except Exception as e:  # noqa: BLE001
        raise DataError(run_dir / "config.yaml", f"unreadable ({str(e).splitlines()[0]})") from None
    return cfg, info


def load_trained_run(run_dir: Path, device: str | torch.device = "cpu") -> TrainedRun:
    """Rebuild the trained method of a finished run folder.

    Raises:
        DataError: not a run folder, no checkpoint, or training not finished.
    """
    from avatarbench.engine.checkpoint import latest_checkpoint
    from avatarbench.engine.registry import load_method_class
    from avatarbench.engine.run import load_run_subject, train_frames_for
    from avatarbench.engine.trainer import seed_everything

    run_dir = Path(run_dir)
    cfg, info = read_run_info(run_dir)
    ck = latest_checkpoint(run_dir)
    if ck is None:
        raise DataError(run_dir, "unfinished run: no checkpoint yet",
                        "a trained run; run the same `avatarbench run` command to train it")
    from avatarbench.render import set_default_backend

    set_default_backend(str(cfg.render.backend))
    subject = load_run_subject(cfg)
    seed_everything(int(cfg.engine.seed))
    method = load_method_class(str(info["method"]))(cfg.method, subject, torch.device(device))
    total = method.total_iterations()
    payload = load_checkpoint_safe(ck)
    step = int(payload.get("step", -1))
    if step < total:
        raise DataError(run_dir, f"unfinished run: trained {step} of {total} steps",
                        "a finished run; run the same `avatarbench run` command to resume it")
    method.setup(train_frames_for(subject, cfg))
    method.load_state_dict(payload["method"])
    return TrainedRun(run_dir=run_dir, cfg=cfg, info=info, subject=subject, method=method, step=step)
