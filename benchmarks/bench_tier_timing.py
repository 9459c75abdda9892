"""Estimate a method's run time at a preset from a short timing (issue 12's bench tier budget).

Starts ``avatarbench run`` for each method, samples every few seconds the process' CPU time
(user + system, from /proc, so the estimate does not depend on how busy a shared machine is) and
the last logged step of ``train_log.csv``, stops it after ``--seconds`` and fits CPU seconds per
step for each training stage seen. The estimate of a full run is the stage's steps x CPU s/step
(CPU seconds ~ wall seconds with one thread on an idle core), divided by a rasterizer speed-up for
the share of the step spent in rasterization when ``--speedup`` is given (the share is not measured
here; it is stated as an assumption in docs/bench_tier.md).

    python benchmarks/bench_tier_timing.py -m gaussian_avatars -m flame_gaussians --seconds 150
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its waited-for children (seconds)."""
    with open(f"/proc/{pid}/stat") as fh:
        parts = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(parts[i]) for i in (11, 12, 13, 14)) / ticks


def _last_step(log: Path) -> tuple[int, str] | None:
    if not log.is_file():
        return None
    rows = list(csv.DictReader(log.open()))
    if not rows:
        return None
    return int(float(rows[-1]["step"])), rows[-1].get("stage", "")


def time_method(method: str, preset: str, seconds: float, root: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "avatarbench.cli.main", "run", "-m", method, "-s", "self_reenact", "--preset", preset,
           "--set", f"output.root={root}", "--set", "engine.log_every=5", "--set", "engine.progress=false",
           "--set", "engine.num_threads=1", "--set", "engine.wandb.mode=disabled", *sum((["--set", e] for e in extra), [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples, t0 = [], time.time()
    try:
        while time.time() - t0 < seconds and proc.poll() is None:
            time.sleep(3)
            logs = list(root.glob(f"*/{method}/{preset}/train_log.csv"))
            st = _last_step(logs[0]) if logs else None
            if st is not None:
                samples.append((_cpu_seconds(proc.pid), st[0], st[1]))
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    per_stage: dict[str, list] = {}
    for cpu, step, stage in samples:
        per_stage.setdefault(stage, []).append((cpu, step))
    rates = {}
    for stage, pts in per_stage.items():
        pts = sorted(set(pts), key=lambda p: p[1])
        if len(pts) >= 2 and pts[-1][1] > pts[0][1]:
            rates[stage] = {"cpu_s_per_step": (pts[-1][0] - pts[0][0]) / (pts[-1][1] - pts[0][1]),
                            "steps_timed": pts[-1][1] - pts[0][1]}
    setup = {"setup_cpu_s_incl_first_steps": samples[0][0], "first_logged_step": samples[0][1]} if samples else {}
    return {"method": method, "preset": preset, "stages": rates, "samples": len(samples), **setup}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--method", action="append", required=True)
    ap.add_argument("--preset", default="bench")
    ap.add_argument("--seconds", type=float, default=150)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    res = []
    with tempfile.TemporaryDirectory(prefix="bench-timing-") as tmp:
        for m in a.method:
            r = time_method(m, a.preset, a.seconds, Path(tmp), a.sets)
            print(json.dumps(r), flush=True)
            res.append(r)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
