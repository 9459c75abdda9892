"""Checkpoints: durable atomic writes, safe loading, fallback past a corrupt newest one.

Layout: ``<run>/checkpoints/step_00001000.pt`` holding::

    {"step": int (steps completed), "method": method.state_dict(), "sampler": {...},
     "rng": {"torch": ByteTensor, "numpy": tuple, "python": tuple}, "train_seconds": float}

Safety: a checkpoint is read with ``torch.load(weights_only=True)``, which only rebuilds tensors,
numbers, strings and containers -- a crafted file cannot run code. Everything in a payload that
is not one of those (NumPy arrays such as the NumPy RNG key, NumPy scalars, sets) is stored in
an inert tagged form (:func:`encode_payload`) and turned back on load (:func:`decode_payload`),
bit for bit, so resume stays exact.

Durability: the bytes go to ``step_*.pt.tmp``, are fsynced, renamed over the final name
(``os.replace``) and the folder is fsynced: after a crash a checkpoint is either complete or
absent. A newest checkpoint that is empty, truncated or otherwise unreadable is reported in one
line, moved to ``checkpoints/corrupt/`` and the previous one is used
(:func:`load_latest_valid`). A checkpoint that references a forbidden global is refused.
"""

from __future__ import annotations

import io
import os
import random
import re
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from avatarbench.errors import AvatarbenchError
from avatarbench.results.durable import durable_write_bytes, fsync_dir

_PAT = re.compile(r"step_(\d{8})\.pt$")
_ND = "__avatarbench_ndarray__"
_NP_SCALAR = "__avatarbench_npscalar__"
_SET = "__avatarbench_set__"


class CheckpointRefused(AvatarbenchError):
    """A checkpoint references code (a global outside torch's weights-only allow-list)."""


class CheckpointCorrupt(AvatarbenchError):
    """A checkpoint is empty, truncated or otherwise unreadable."""


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


def encode_payload(obj: Any, where: str = "payload") -> Any:
    """Turn ``obj`` into what ``torch.load(weights_only=True)`` accepts, losslessly.

    Tensors, ``int/float/bool/str/bytes/None`` and dict/list/tuple containers pass through;
    NumPy arrays and scalars become ``{_ND: uint8 tensor of the raw bytes, "dtype", "shape"}``
    (object dtypes refused), sets become a tagged list. Anything else raises ``TypeError`` naming
    the key, at save time rather than as an unloadable checkpoint.
    """
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError(f"{where}: NumPy object array cannot be stored in a checkpoint")
        a = np.array(obj, order="C", copy=True)  # (ascontiguousarray would make 0-d arrays 1-d)
        raw = torch.frombuffer(bytearray(a.tobytes()), dtype=torch.uint8) if a.nbytes else torch.zeros(0, dtype=torch.uint8)
        return {_ND: raw, "dtype": a.dtype.str, "shape": list(a.shape)}
    if isinstance(obj, np.generic):
        return {_NP_SCALAR: encode_payload(np.asarray(obj), where)}
    if isinstance(obj, dict):
        items = {k: encode_payload(v, f"{where}.{k}") for k, v in obj.items()}
        return OrderedDict(items) if isinstance(obj, OrderedDict) else items
    if isinstance(obj, (set, frozenset)):
        return {_SET: [encode_payload(v, where) for v in sorted(obj, key=repr)]}
    if isinstance(obj, list):
        return [encode_payload(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return tuple(encode_payload(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, torch.Size):
        return obj
    raise TypeError(f"{where}: a {type(obj).__module__}.{type(obj).__name__} cannot be stored in a checkpoint "
                    "(use tensors, numbers, strings, NumPy arrays or containers of them)")


def decode_payload(obj: Any) -> Any:
    """Inverse of :func:`encode_payload`."""
    if isinstance(obj, dict):
        if _ND in obj and set(obj) == {_ND, "dtype", "shape"}:
            raw = obj[_ND].numpy().tobytes()
            return np.frombuffer(raw, dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
        if _NP_SCALAR in obj and len(obj) == 1:
            return decode_payload(obj[_NP_SCALAR])[()]
        if _SET in obj and len(obj) == 1:
            return {decode_payload(v) for v in obj[_SET]}
        out = {k: decode_payload(v) for k, v in obj.items()}
        return OrderedDict(out) if isinstance(obj, OrderedDict) else out
    if isinstance(obj, list):
        return [decode_payload(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(decode_payload(v) for v in obj)
    return obj


def checkpoint_bytes(payload: dict) -> bytes:
    """The exact bytes :func:`save_checkpoint` writes for ``payload``."""
    buf = io.BytesIO()
    torch.save(encode_payload(payload), buf)
    return buf.getvalue()


def save_checkpoint(run_dir: Path, step: int, payload: dict, keep: int = 2) -> Path:
    """Write durably (see :func:`durable_write_bytes`) and keep only the ``keep`` newest checkpoints."""
    d = checkpoint_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"step_{step:08d}.pt"
    durable_write_bytes(path, checkpoint_bytes(payload))
    if keep > 0:
        for _, old in list_checkpoints(run_dir)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint without executing anything from it.

    Raises:
        CheckpointRefused: the file references a global outside the weights-only allow-list
            (the message names the file and the global; nothing was imported or called).
        CheckpointCorrupt: empty, truncated or unreadable file.
    """
    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - classified below
        text = str(e)
        m = re.search(r"GLOBAL (\S+)", text)
        if m and "weights" in text.lower():  # torch names the global it refused to import
            raise CheckpointRefused(f"{path}: refused to load: the checkpoint references {m.group(1)}, which an "
                                    "avatarbench checkpoint never holds (possible code injection; delete "
                                    "the file if you did not make it)") from None
        first = next((ln.strip() for ln in text.splitlines()[1:] if ln.strip() and "Unsupported" in ln), "")
        text = first or text
        raise CheckpointCorrupt(f"{path}: unreadable checkpoint ({type(e).__name__}: "
                                f"{text.splitlines()[0][:160] if text else 'empty or truncated'})") from None
    if not isinstance(raw, dict) or "step" not in raw:
        raise CheckpointCorrupt(f"{path}: not an avatarbench checkpoint (no 'step' entry)")
    return decode_payload(raw)


def move_aside(path: Path) -> Path:
    """Move a bad checkpoint to ``checkpoints/corrupt/<name>.<unix time>`` (kept for inspection)."""
    dest_dir = path.parent / "corrupt"
    dest_dir.mkdir(exist_ok=True)
    dest = dest_dir / f"{path.name}.{int(time.time())}"
    os.replace(path, dest)
    fsync_dir(path.parent)
    return dest


def load_latest_valid(run_dir: Path, echo: Callable[[str], Any] | None = None) -> tuple[Path, dict] | None:
    """The newest checkpoint that loads, moving unreadable newer ones aside with one line each.

    Returns ``None`` when there is no (valid) checkpoint. :class:`CheckpointRefused` propagates:
    a file that tries to import code is an attack or a mistake, never silently skipped.
    """
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path)
        except CheckpointCorrupt as e:
            dest = move_aside(path)
            if echo is not None:
                echo(f"warning: {e}; moved it to {dest} and using the previous checkpoint")
    return None
