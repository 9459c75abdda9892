"""No stuck or half-made run folders: validation before writing, training identity, atomic
creation and takeover of folders that never trained, environment records, Ctrl-C and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from avatarbench.cli.main import INTERRUPTED, main
from tests.reliability.helpers import TINY, cli, error_lines, tiny_run_args


def _main(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.mark.parametrize("setting,named", [
    ("method.train.iterations=abc", "method.train.iterations=abc: expected an integer"),
    ("method.train.iterations=2.5", "method.train.iterations=2.5: expected an integer"),
    ("method.train.iterations=-5", "method.train.iterations=-5: expected a number of iterations >= 0"),
    ("method.train.iterations=0", "flame_gaussians would train for 0 iterations"),
    ("engine.log_every=0", "engine.log_every=0"),
    ("data.scale=big", "data.scale=big: expected a number"),
    ("engine.progress=maybe", "engine.progress=maybe: expected a boolean"),
])
def test_bad_values_are_refused_before_the_folder_exists(tmp_path, capsys, setting, named):
    out = tmp_path / "run"
    code, _, err = _main(["run", "-m", "flame_gaussians", "--output", out, "--quiet", "--set", setting], capsys)
    assert code == 2 and err.strip().startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert named in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused_before_the_folder_exists(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _main(["run", "-m", "flame_gaussians", "--output", out, "--set", "engine.device=cuda"], capsys)
    assert code == 2 and "engine.device=cuda: CUDA is not available" in err and not out.exists()


def test_refused_command_then_corrected_one_and_takeover_of_a_folder_that_never_trained(tmp_path):
    from avatarbench.engine.config import RunRequest, resolve_config
    from avatarbench.engine.run import prepare_run_dir

    out = tmp_path / "run"
    bad = cli(*tiny_run_args(out, "method.train.iterations=abc"))
    assert bad.returncode == 2 and len(error_lines(bad)) == 1 and not out.exists()
    # what a crash before training leaves: a folder with run.json of *another* config, no checkpoint,
    # plus a temp folder of a creator process that died
    cfg = resolve_config(RunRequest("flame_gaussians", sets=("method.train.iterations=7",)))
    prepare_run_dir(cfg, "synth_head_a", out)
    dead = tmp_path / ".run.creating-999999999"
    dead.mkdir()
    (dead / "run.json").write_text("{")
    good = cli(*tiny_run_args(out))
    assert good.returncode == 0, good.stderr
    assert "never trained" in good.stdout
    saved = json.loads((out / "run.json").read_text())
    assert saved["identity"]["method"]["train"]["iterations"] == 4
    assert not dead.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.creating")]


def test_ctrl_c_keeps_the_checkpoint_and_a_quiet_run_resumes_without_quiet(tmp_path):
    out = tmp_path / "run"
    args = tiny_run_args(out, "method.train.iterations=16", "engine.checkpoint_every=2")
    p = subprocess.Popen([sys.executable, "-m", "avatarbench.cli.main", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not list((out / "checkpoints").glob("step_*.pt")):
            assert p.poll() is None, p.stderr.read()
            time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130
    assert err.strip().splitlines()[-1] == INTERRUPTED
    kept = sorted((out / "checkpoints").glob("step_*.pt"))
    assert kept and not list((out / "checkpoints").glob("*.tmp"))
    # the same command without --quiet, with another thread count and log interval, resumes
    proc = cli(*[a for a in args if a != "--quiet"], "--set", "engine.num_threads=2", "--set", "engine.log_every=3",
               timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"resumed from step {int(kept[-1].stem[5:])}" in proc.stdout


def test_environment_json_is_kept_and_each_evaluation_records_its_own(run_copy):
    env = (run_copy / "environment.json").read_bytes()
    assert (run_copy / "eval" / "self_reenact" / "environment.json").is_file()
    proc = cli(*tiny_run_args(run_copy, split="novel_view"))
    assert proc.returncode == 0, proc.stderr
    assert "reusing the trained model" in proc.stdout
    assert (run_copy / "environment.json").read_bytes() == env
    rec = json.loads((run_copy / "eval" / "novel_view" / "environment.json").read_text())
    assert {"python", "versions", "device", "created"} <= set(rec)


def test_tiny_settings_are_the_ones_the_identity_ignores():
    """Guard for the tests above: the resumed command differs only in non-identity settings."""
    from avatarbench.engine.config import RunRequest, resolve_config, training_identity

    a = resolve_config(RunRequest("flame_gaussians", sets=TINY))
    b = resolve_config(RunRequest("flame_gaussians", sets=TINY + ("engine.num_threads=2", "engine.log_every=3",
                                                                   "engine.progress=false")))
    assert training_identity(a) == training_identity(b)
    c = resolve_config(RunRequest("flame_gaussians", sets=TINY + ("engine.seed=1",)))
    assert training_identity(a) != training_identity(c)
