"""Two identical runs into one folder, started together, both succeed (two real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.reliability.helpers import tiny_run_args


def test_two_identical_runs_started_together_both_succeed(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, WANDB_MODE="disabled")
    cmd = [sys.executable, "-m", "avatarbench.cli.main", *tiny_run_args(out)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (o, e) in zip(procs, results):
        assert p.returncode == 0, e
        assert "Traceback" not in e
    outs = [o for o, _ in results]
    # one evaluated, the other found the results after waiting on the lock (or reused the model)
    assert sum("already has results" in o for o in outs) == 1, outs
    rec = json.loads((out / "eval" / "self_reenact" / "results.json").read_text())
    assert rec["num_frames"] == 2 and rec["train"]["iterations"] == 4
    assert not list((out / "eval").glob("*.partial*"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.creating")]
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["step_00000003.pt", "step_00000004.pt"]
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # trained once: no duplicated rows
