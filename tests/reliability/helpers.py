"""Shared helpers of the reliability tests: real subprocesses, crafted files, tiny runs."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

#: the tiniest real training run of the reference baseline (synthetic head, 4 steps, 2 frames)
TINY = ("method.train.iterations=4", "protocol.max_frames=2", "engine.num_threads=1", "output.save_videos=false")


def cli(*args, env: dict | None = None, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``avatarbench ARGS`` in a fresh Python process; returns the completed process (text)."""
    e = dict(os.environ)
    e.setdefault("WANDB_MODE", "disabled")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "avatarbench.cli.main", *map(str, args)], capture_output=True,
                          text=True, env=e, timeout=timeout, cwd=cwd)


def py(code: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a Python snippet in a fresh process."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=timeout)


def tiny_run_args(output: Path, *extra_sets: str, split: str = "self_reenact") -> list[str]:
    args = ["run", "-m", "flame_gaussians", "-s", split, "--output", str(output), "--quiet"]
    for s in TINY + tuple(extra_sets):
        args += ["--set", s]
    return args


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """The ``error: ...`` lines of a process's stderr."""
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]


class _Payload:
    """Unpickling this calls ``os.system('touch <marker>')`` -- the classic pickle exploit."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _ExecPayload:
    """Unpickling this calls ``builtins.exec`` with code that writes the marker."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def evil_pickle(path: Path, marker: Path, *, via: str = "system", protocol: int = 2, wrap_dict: bool = True) -> Path:
    """Write a model-looking pickle (a dict with FLAME keys) whose loading would create ``marker``."""
    payload = _Payload(marker) if via == "system" else _ExecPayload(marker)
    obj = {"v_template": payload, "f": [[0, 1, 2]]} if wrap_dict else payload
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path
