"""The results store: run folders on disk and the records inside them.

A run folder holds one trained avatar (method x variant x preset x subject) and any number of
evaluations of it::

    <root>/<subject>/<method>[+<ablation>]/<preset>[-seed<k>]/
        run.json                 identity: method, variant, preset, subject, config sha, created
        config.yaml              the resolved training config
        environment.json         versions, device, git commit
        checkpoints/step_*.pt    the newest checkpoints (resume + re-render)
        train_log.csv/.jsonl     training scalars (loss, PSNR curves)
        export/                  method exports (e.g. PLY)
        eval/<split>/            see avatarbench.engine.evaluate
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from avatarbench.paths import repo_root


def run_folder(root: Path, subject: str, method: str, ablation: str | None, preset: str, seed: int = 0) -> Path:
    """``<root>/<subject>/<method>[+<ablation>]/<preset>[-seed<k>]`` (seed 0 has no suffix)."""
    variant = method if not ablation else f"{method}+{ablation}"
    return Path(root) / subject / variant / (preset if not seed else f"{preset}-seed{seed}")


def config_sha(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def git_commit() -> dict:
    root = repo_root()
    if root is None:
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment_info(device=None) -> dict:
    """Versions, device and git commit, recorded with every run."""
    import importlib.metadata as md

    import torch

    versions = {}
    for pkg in ("avatarbench", "torch", "torchvision", "numpy", "gsplat", "lpips", "torchmetrics", "omegaconf"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    dev = {"type": str(device) if device is not None else "cpu", "name": platform.processor() or platform.machine()}
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        dev["name"] = torch.cuda.get_device_name(torch.device(device))
    try:
        load = list(__import__("os").getloadavg())
    except OSError:
        load = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "versions": versions,
            "device": dev, "torch_threads": torch.get_num_threads(), "cpu_count": __import__("os").cpu_count(),
            "load_average": load, "git": git_commit(), "created": now_iso()}


def write_json(path: Path, obj) -> None:
    """Write a JSON record atomically and durably (temp file, fsync, ``os.replace``, fsync of the folder)."""
    from avatarbench.results.durable import durable_write_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    durable_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def find_results(root: Path) -> list[dict]:
    """Every evaluation record (``eval/<split>/results.json``) below ``root``, with its path."""
    out = []
    for p in sorted(Path(root).glob("**/eval/*/results.json")):
        try:
            rec = json.loads(p.read_text())
        except json.JSONDecodeError:
            continue
        rec["_path"] = str(p)
        out.append(rec)
    return out
