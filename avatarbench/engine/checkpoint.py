"""Checkpoints: atomic writes, the latest one found on resume, old ones pruned.

Layout: ``<run>/checkpoints/step_00001000.pt`` holding::

    {"step": int (steps completed), "method": method.state_dict(), "sampler": {...},
     "rng": {"torch": ByteTensor, "numpy": tuple, "python": tuple}, "train_seconds": float,
     "identity_sha": str (hash of the training config)}
"""

from __future__ import annotations

import io
import os
import random
import re
from pathlib import Path

import numpy as np
import torch

_PAT = re.compile(r"step_(\d{8})\.pt$")


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    d = checkpoint_dir(run_dir)
    if not d.exists():
        return []
    out = [(int(m.group(1)), p) for p in d.iterdir() if (m := _PAT.search(p.name))]
    return sorted(out)


def latest_checkpoint(run_dir: Path) -> Path | None:
    cks = list_checkpoints(run_dir)
    return cks[-1][1] if cks else None


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(run_dir: Path, step: int, payload: dict, keep: int = 2) -> Path:
    """Write atomically (temp file + rename) and keep only the ``keep`` newest checkpoints."""
    d = checkpoint_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"step_{step:08d}.pt"
    buf = io.BytesIO()
    torch.save(payload, buf)
    tmp = path.with_suffix(".pt.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
    if keep > 0:
        for _, old in list_checkpoints(run_dir)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)
