"""Run logs: a local CSV + JSON-lines log (always) and, when installed, wandb (offline by default).

``train_log.csv`` / ``train_log.jsonl`` in the run folder are the logs every tool reads. wandb is
an optional extra (``pip install -e ".[wandb]"``); when it is installed, ``engine.wandb.mode``
chooses ``offline`` (default: files under ``<run>/wandb``, upload later with ``wandb sync``),
``online``, or ``disabled`` (tests; also honoured from ``$WANDB_MODE``). wandb is started
silently on the first logged row (a reused, finished model never starts it) and announced in one
line saying where its files are.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path


class RunLogger:
    """Appends ``{"step": int, **scalars}`` rows to ``train_log.jsonl`` and ``train_log.csv``."""

    def __init__(self, run_dir: Path, wandb_cfg=None, config: dict | None = None, name: str = "",
                 echo=None):
        self.run_dir = Path(run_dir)
        self.jsonl = self.run_dir / "train_log.jsonl"
        self.csv = self.run_dir / "train_log.csv"
        self._wandb = None
        self._keys: list[str] | None = None
        self._echo = echo or (lambda *a, **k: None)
        self._mode = os.environ.get("WANDB_MODE") or (wandb_cfg.mode if wandb_cfg is not None else "disabled")
        self._wandb_args = None if self._mode == "disabled" else dict(
            project=wandb_cfg.project, entity=wandb_cfg.entity, mode=self._mode, dir=str(self.run_dir), name=name,
            config=config, resume="allow", id=_wandb_id(self.run_dir))

    def _start_wandb(self) -> None:
        """Start wandb once, silently, on the first logged row (never for a reused model)."""
        args, self._wandb_args = self._wandb_args, None
        if args is None:
            return
        try:
            import wandb
        except ImportError:
            if args["mode"] == "online":
                warnings.warn("engine.wandb.mode=online but wandb is not installed (pip install -e '.[wandb]'); "
                              f"logging to {self.csv} only")
            return
        os.environ.setdefault("WANDB_SILENT", "true")  # no banner, no sync hints: one line below instead
        try:
            self._wandb = wandb.init(settings=wandb.Settings(silent=True), **args)
        except Exception as e:  # logging must never break a run
            warnings.warn(f"wandb disabled for this run: {e.__class__.__name__}: {str(e).splitlines()[0]}")
            self._wandb = None
            return
        where = Path(getattr(self._wandb, "dir", self.run_dir)).parent
        if args["mode"] == "offline":
            self._echo(f"wandb (offline) logs: {where} (upload later with `wandb sync` on that folder)")
        else:
            self._echo(f"wandb ({args['mode']}): {getattr(self._wandb, 'url', None) or where}")

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (an interrupted run resumes from its checkpoint; ``0``:
        a run killed before its first checkpoint starts its log afresh) and a partial last line
        left by a kill mid-write. Both files are rewritten atomically."""
        if not self.jsonl.exists():
            if self.csv.exists():
                self.csv.unlink()
            return
        rows = [r for r in _parse_rows(self.jsonl) if r.get("step", 0) <= step]
        from avatarbench.results.durable import durable_write_bytes

        durable_write_bytes(self.jsonl, "".join(json.dumps(r) + "\n" for r in rows).encode())
        self._rewrite_csv(rows)

    def log(self, step: int, scalars: dict) -> None:
        row = {"step": int(step), **{k: _scalar(v) for k, v in scalars.items()}}
        with self.jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self._keys is not None and set(row) <= set(self._keys):
            with self.csv.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._keys).writerow(row)
        else:  # new columns: rewrite the CSV once
            self._rewrite_csv(_parse_rows(self.jsonl))
        if self._wandb_args is not None:
            self._start_wandb()
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))}, step=step)

    def _rewrite_csv(self, rows: list[dict]) -> None:
        import io

        from avatarbench.results.durable import durable_write_bytes

        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        self._keys = keys
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
        durable_write_bytes(self.csv, buf.getvalue().encode())

    def close(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _scalar(v):
    try:
        import torch

        if isinstance(v, torch.Tensor):
            return float(v.detach().cpu())
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return float(v)


def _wandb_id(run_dir: Path) -> str:
    import hashlib

    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def _parse_rows(path: Path) -> list[dict]:
    """The rows of a JSON-lines log; a line that does not parse (a write cut short by a kill) is dropped."""
    rows = []
    for line in Path(path).read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_log(run_dir: Path) -> list[dict]:
    p = Path(run_dir) / "train_log.jsonl"
    if not p.exists():
        return []
    return _parse_rows(p)
