"""Corrupt state falls back with a message; logs survive kills (real processes and signals)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from avatarbench.engine.checkpoint import list_checkpoints
from avatarbench.engine.logging import read_log
from tests.reliability.helpers import cli, tiny_run_args


def _toy(run_dir: Path, iterations=10, ck_every=3, sleep=0.0, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.reliability.toy_train", str(run_dir), str(iterations),
                           str(ck_every), str(sleep)], capture_output=True, text=True, timeout=timeout)


def _toy_until(run_dir: Path, step: int, *, iterations=10, ck_every=3, sleep=0.3, sig=signal.SIGKILL) -> None:
    """Start the toy training and send ``sig`` once ``step`` steps are done and logged (it prints
    ``step k`` at the start of step k's sleep, i.e. before step k is logged)."""
    p = subprocess.Popen([sys.executable, "-m", "tests.reliability.toy_train", str(run_dir), str(iterations),
                          str(ck_every), str(sleep)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in p.stdout:
            if line.strip() == f"step {step + 1}":
                p.send_signal(sig)
                break
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def _digest(proc) -> str:
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("done")][-1]
    return line.split()[2]


@pytest.fixture(scope="module")
def straight_digest(tmp_path_factory):
    proc = _toy(tmp_path_factory.mktemp("straight") / "run")
    assert proc.returncode == 0, proc.stderr
    return _digest(proc)


def test_kill_before_first_checkpoint_leaves_no_duplicate_rows(tmp_path, straight_digest):
    run = tmp_path / "run"
    _toy_until(run, 2, ck_every=5)  # killed after 2 logged steps, before the first checkpoint
    assert not list_checkpoints(run) and [r["step"] for r in read_log(run)] == [1, 2]
    proc = _toy(run, ck_every=5)
    assert proc.returncode == 0, proc.stderr
    assert [r["step"] for r in read_log(run)] == list(range(1, 11))
    lines = (run / "train_log.csv").read_text().splitlines()
    assert len(lines) == 11 and [int(ln.split(",")[0]) for ln in lines[1:]] == list(range(1, 11))
    assert _digest(proc) == straight_digest


def test_partial_last_log_line_is_dropped_on_resume(tmp_path, straight_digest):
    run = tmp_path / "run"
    _toy_until(run, 5)  # checkpoint at 3, rows 1..5
    with open(run / "train_log.jsonl", "a") as f:
        f.write('{"step": 6, "loss": 0.1')  # a write cut short by the kill
    with open(run / "train_log.csv", "a") as f:
        f.write("6,0.1")
    proc = _toy(run)
    assert proc.returncode == 0 and "JSONDecodeError" not in proc.stderr, proc.stderr
    assert [r["step"] for r in read_log(run)] == list(range(1, 11))
    assert _digest(proc) == straight_digest  # resume stays bit-identical


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path, straight_digest, damage):
    run = tmp_path / "run"
    _toy_until(run, 8)  # checkpoints 3 and 6 kept
    assert [s for s, _ in list_checkpoints(run)] == [3, 6]
    newest = list_checkpoints(run)[-1][1]
    raw = newest.read_bytes()
    newest.write_bytes({"empty": b"", "truncated": raw[: len(raw) // 2], "garbage": __import__("random").Random(0).randbytes(300)}[damage])
    proc = _toy(run)
    assert proc.returncode == 0, proc.stderr
    warn = [ln for ln in proc.stdout.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and str(newest) in warn[0] and "previous checkpoint" in warn[0]
    moved = list((run / "checkpoints" / "corrupt").iterdir())
    assert len(moved) == 1 and moved[0].name.startswith(newest.name)
    assert [r["step"] for r in read_log(run)] == list(range(1, 11))
    assert _digest(proc) == straight_digest  # resumed from step 3, same final model


def test_corrupt_checkpoint_of_a_finished_run_falls_back_in_avatarbench_run(run_copy):
    """The full command: newest checkpoint empty -> one line, moved aside, previous one resumes."""
    cks = list_checkpoints(run_copy)
    assert [s for s, _ in cks] == [3, 4]
    cks[-1][1].write_bytes(b"")
    shutil.rmtree(run_copy / "eval")
    proc = cli(*tiny_run_args(run_copy))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    warn = [ln for ln in out.splitlines() if ln.startswith("warning:") and "step_00000004.pt" in ln]
    assert len(warn) == 1 and "resumed from step 3" in out
    assert (run_copy / "eval" / "self_reenact" / "results.json").exists()
    assert [s for s, _ in list_checkpoints(run_copy)] == [3, 4]


def test_records_are_written_through_a_temp_file_and_replaced(tmp_path):
    """Durable writes: a failed write leaves the previous record untouched and no temp file behind."""

    from avatarbench.results.store import write_json

    target = tmp_path / "results.json"
    write_json(target, {"psnr": 30.0})
    before = target.read_bytes()
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))\n"
            "from avatarbench.results.store import write_json\n"
            f"write_json(__import__('pathlib').Path({str(target)!r}), {{'psnr': 31.0, 'pad': 'x' * 500}})\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "File too large" in proc.stderr
    assert target.read_bytes() == before and json.loads(before)["psnr"] == 30.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
