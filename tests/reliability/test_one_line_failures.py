"""Every failure is one line naming the path and what to do; nothing written earlier is lost."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

from avatarbench.errors import WriteError
from tests.reliability.helpers import cli, error_lines, tiny_run_args


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(run_dir):
    return {str(p.relative_to(run_dir)): _sha(p) for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != "train.lock"}


def _one_error(proc) -> str:
    errs = error_lines(proc)
    assert proc.returncode == 2 and len(errs) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return errs[0]


def test_output_that_is_a_file(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    line = _one_error(cli(*tiny_run_args(f)))
    assert str(f) in line and "is a file" in line and f.read_text() == "mine"
    line = _one_error(cli(*tiny_run_args(f / "sub")))
    assert str(f) in line and "is a file" in line


def test_check_on_a_split_with_no_evaluation(finished_run):
    line = _one_error(cli("check", finished_run, "-s", "novel_view"))
    assert str(finished_run / "eval" / "novel_view") in line and "not been evaluated" in line
    assert "self_reenact" in line  # what can be checked instead


def test_file_size_limit_while_writing_results_keeps_earlier_results(run_copy):
    """Disk full, simulated with RLIMIT_FSIZE (portable, needs no root): PNG renders of the new split
    exceed 2 kB and fail with EFBIG. The self_reenact results and the checkpoints stay intact."""
    before = _snapshot(run_copy)

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    args = [sys.executable, "-m", "avatarbench.cli.main", *tiny_run_args(run_copy, split="novel_view")]
    proc = subprocess.run(args, capture_output=True, text=True, preexec_fn=limit, timeout=300,
                          env=dict(os.environ, WANDB_MODE="disabled"))
    line = _one_error(proc)
    assert "novel_view evaluation" in line and "file size limit" in line and "intact" in line
    after = _snapshot(run_copy)
    kept = {k: v for k, v in before.items() if not k.startswith("train_log")}
    assert {k: after.get(k) for k in kept} == kept  # checkpoints, run.json, self_reenact results untouched
    assert not (run_copy / "eval" / "novel_view").exists()
    assert not list((run_copy / "eval").glob("novel_view.partial*"))
    # with space again, the same command finishes
    proc = cli(*tiny_run_args(run_copy, split="novel_view"))
    assert proc.returncode == 0, proc.stderr
    assert (run_copy / "eval" / "novel_view" / "results.json").is_file()


def test_disk_full_message_from_a_real_enospc():
    """/dev/full returns ENOSPC on every write: the message says what was written and that
    earlier results are intact."""
    with pytest.raises(OSError) as e:
        with open("/dev/full", "wb") as f:
            f.write(b"x" * 10)
            f.flush()
    msg = str(WriteError.from_oserror(e.value, "the self_reenact evaluation", "/runs/x/eval/self_reenact.partial"))
    assert "the disk is full while writing the self_reenact evaluation" in msg and "intact" in msg
    assert "\n" not in msg


def _readonly_dir(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        return d, None
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("running as root without permission to mount a read-only tmpfs")
    return d, lambda: subprocess.run(["umount", str(d)], check=False)


def test_read_only_output(tmp_path):
    d, cleanup = _readonly_dir(tmp_path)
    try:
        line = _one_error(cli(*tiny_run_args(d / "run")))
        assert str(d / "run") in line or str(d) in line
        assert "Read-only" in line or "Permission denied" in line
        assert "writable --output" in line
    finally:
        if cleanup:
            cleanup()


# ----------------------------------------------------------------------------- data inspect --check
@pytest.fixture
def damaged_union(tmp_path):
    from tests.data.fixtures_vhap import write_union

    u = write_union(tmp_path / "data", num_timesteps=2)
    seq = u.sequences[0].folder
    img = iio.imread(seq / "images" / "00000_05.png")
    iio.imwrite(seq / "images" / "00000_05.png", np.pad(img, ((0, 2), (0, 0), (0, 0))))  # 2 rows too many
    mask = iio.imread(seq / "fg_masks" / "00001_05.png")
    iio.imwrite(seq / "fg_masks" / "00001_05.png", mask[:, :-1])  # one column short
    (seq / "images" / "00001_06.png").write_bytes(b"\x89PNG truncated")
    (u.sequences[1].folder / "images" / "00000_05.png").unlink()
    np.savez(u.sequences[1].folder / "flame_param" / "00001.npz", expr=np.zeros((1, 7), np.float32))
    return u


def test_data_inspect_check_reports_every_problem_once(damaged_union):
    proc = cli("data", "inspect", damaged_union.root, "--check")
    problems = [ln for ln in proc.stdout.splitlines() if ln.startswith("problem: ")]
    assert proc.returncode == 1, proc.stderr
    text = "\n".join(problems)
    s0, s1 = damaged_union.sequences[0].folder, damaged_union.sequences[1].folder
    s0, s1 = s0.name, s1.name  # paths are printed as the dataset names them (UNION/../<seq>/...)
    assert f"{s0}/images/00000_05.png: image is 12x18 pixels (expected 12x16" in text
    assert f"{s0}/fg_masks/00001_05.png: foreground mask is 11x16 pixels (expected 12x16" in text
    assert f"{s0}/images/00001_06.png: unreadable image" in text
    assert f"{s1}/images/00000_05.png: image file not found" in text
    assert f"{s1}/flame_param/00001.npz" in text
    assert len(problems) == 5 and "5 problems" in proc.stdout


def test_wrong_size_image_stops_run_before_training(damaged_union, tmp_path):
    out = tmp_path / "out"
    proc = cli("run", "-m", "flame_gaussians", "--data", damaged_union.root, "--output", out, "--quiet",
               "--set", "engine.num_threads=1")
    line = _one_error(proc)
    assert "more problems: run `avatarbench data inspect --check`" in line
    assert not out.exists()


def test_run_json_is_complete_whenever_the_folder_exists(finished_run):
    meta = json.loads((finished_run / "run.json").read_text())
    assert {"method", "subject", "config_sha", "identity", "created"} <= set(meta)
