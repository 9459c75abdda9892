"""Quiet, useful output: warnings once and short, wandb silent and lazy, a summary that says
where everything is."""

from __future__ import annotations

import logging
import sys
import types
import warnings

from omegaconf import OmegaConf

from avatarbench.cli import output
from avatarbench.engine.logging import RunLogger

LPIPS_MSG = ("LPIPS-alex unavailable, recorded as null: /root/.cache/torch/hub/checkpoints/alexnet-owt-7be5be79.pth "
             "not found. Download https://download.pytorch.org/models/alexnet-owt-7be5be79.pth on a machine with "
             "network access and put alexnet-owt-7be5be79.pth into /root/.cache/torch/hub/checkpoints.")


def test_shorten_keeps_the_first_sentence_and_paths():
    assert output.shorten(LPIPS_MSG) == ("LPIPS-alex unavailable, recorded as null: "
                                         "/root/.cache/torch/hub/checkpoints/alexnet-owt-7be5be79.pth not found")
    assert output.shorten("x" * 500) == "x" * 197 + "..."
    assert output.shorten("two\nlines. more") == "two lines"


def test_each_warning_is_printed_once_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr(output, "_SEEN", set())
    monkeypatch.delenv("AVATARBENCH_VERBOSE", raising=False)
    root = logging.getLogger()
    saved = list(root.handlers), warnings.showwarning
    try:
        output.setup_warnings()
        output.setup_warnings()  # idempotent: still one handler
        assert sum(isinstance(h, output._OnceHandler) for h in root.handlers) == 1
        log = logging.getLogger("avatarbench.metrics.lpips_weights")
        for _ in range(3):
            log.warning("%s", LPIPS_MSG)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = saved[1]
            output.setup_warnings()
            for _ in range(2):
                warnings.warn("wandb disabled for this run: X. details")
    finally:
        root.handlers[:] = saved[0]
        warnings.showwarning = saved[1]
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: " + output.shorten(LPIPS_MSG), "warning: wandb disabled for this run: X"]


class _FakeRun:
    def __init__(self, directory):
        self.dir = str(directory / "wandb" / "offline-run-x" / "files")
        self.logged = []

    def log(self, row, step):
        self.logged.append((step, row))

    def finish(self):
        pass


def _fake_wandb(calls, tmp_path):
    mod = types.ModuleType("wandb")
    mod.Settings = lambda **kw: kw

    def init(**kw):
        calls.append(kw)
        return _FakeRun(tmp_path)

    mod.init = init
    return mod


def test_wandb_starts_silently_on_first_row_and_never_for_a_reused_model(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    calls, lines = [], []
    monkeypatch.setitem(sys.modules, "wandb", _fake_wandb(calls, tmp_path))
    cfg = OmegaConf.create({"mode": "offline", "project": "p", "entity": None})
    reused = RunLogger(tmp_path, cfg, {}, echo=lines.append)
    reused.close()
    assert calls == [] and lines == []
    logger = RunLogger(tmp_path, cfg, {}, echo=lines.append)
    logger.log(1, {"loss": 0.5})
    logger.log(2, {"loss": 0.25})
    logger.close()
    assert len(calls) == 1 and calls[0]["mode"] == "offline" and calls[0]["settings"] == {"silent": True}
    assert len(lines) == 1 and str(tmp_path / "wandb" / "offline-run-x") in lines[0]
    assert (tmp_path / "train_log.csv").read_text().splitlines() == ["step,loss", "1,0.5", "2,0.25"]


def test_without_wandb_installed_local_logs_still_work(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    lines = []
    logger = RunLogger(tmp_path, OmegaConf.create({"mode": "offline", "project": "p", "entity": None}), {},
                       echo=lines.append)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # offline without wandb is the normal case: no warning
        logger.log(1, {"loss": 1.0})
    logger.close()
    assert lines == [] and (tmp_path / "train_log.jsonl").read_text() == '{"step": 1, "loss": 1.0}\n'


def test_summary_says_where_renders_and_videos_are_and_how_long_training_took(tmp_path):
    from avatarbench.engine.run import RunOutcome, format_seconds, format_summary

    eval_dir = tmp_path / "eval" / "self_reenact"
    for i in range(3):
        (eval_dir / "renders" / "cam_00").mkdir(parents=True, exist_ok=True)
        (eval_dir / "renders" / "cam_00" / f"{i}.png").write_bytes(b"")
    res = {"method": "flame_gaussians", "variant": "full", "preset": "smoke", "subject": "s", "split": "self_reenact",
           "num_frames": 3, "num_gaussians": 10, "metrics": {"psnr": 20.0, "ssim": 0.9},
           "geometry": {"p2m_mean_mm": 0.0, "chamfer_mm": 1.5}, "train": {"iterations": 600, "seconds": 372.4},
           "videos": ["videos/cam_00.mp4", "videos/cam_01.mp4"]}
    text = format_summary(RunOutcome(tmp_path, eval_dir, res, False))
    assert "training: 600 iterations in 6 min 12 s" in text
    assert f"renders: {eval_dir / 'renders'} (3 PNG)" in text
    assert f"videos: {eval_dir / 'videos'} (2 MP4" in text
    assert "p2m 0.000 is exact" in text
    res["geometry"]["p2m_mean_mm"] = 0.8
    assert "p2m 0.000" not in format_summary(RunOutcome(tmp_path, eval_dir, res, False))
    assert [format_seconds(s) for s in (4.25, 60, 7325)] == ["4.2 s", "1 min 00 s", "2 h 02 min"]


def test_check_and_eval_end_with_one_human_line():
    from avatarbench.engine.offline_eval import format_eval
    from avatarbench.engine.reproduce import format_check

    ok = {"checkpoint_resave_identical": True, "rerender_identical": True, "rerender_mismatched_frames": [],
          "offline_eval_max_abs_diff": {"psnr": 0.0, "ssim": 3e-8, "lpips_vgg": None}, "offline_eval_within_1e-6": True}
    assert format_check(ok) == ("all checks passed: checkpoint re-save PASS, re-render PASS, offline re-score PASS "
                                "(largest difference 3.0e-08 in ssim)")
    bad = dict(ok, rerender_identical=False, rerender_mismatched_frames=["a", "b"])
    assert format_check(bad).startswith("CHECK FAILED: checkpoint re-save PASS, re-render FAIL (2+ frames differ)")
    res = {"split": "self_reenact", "num_frames": 6, "metrics": {"psnr": 16.914, "ssim": 0.61181},
           "max_abs_diff_vs_in_run": {"psnr": 2e-6, "ssim": 0.0}}
    assert format_eval(res) == ("eval self_reenact: 6 images, PSNR 16.91 dB, SSIM 0.6118; vs in-run metrics: FAIL "
                                "(largest difference 2.0e-06 in psnr, tolerance 1e-06)")
    assert format_eval({"split": "x", "num_frames": 0, "metrics": {}}).endswith("no in-run metrics to compare with")


def test_sweep_shows_the_newest_progress_line_of_a_job_log(tmp_path):
    from avatarbench.engine.sweep import last_progress_line

    log = tmp_path / "job.err"
    assert last_progress_line(log) == ""  # not started yet
    log.write_text("loading\ntrain flame_gaussians:  10%|█         | 2/20 [00:01<00:09,  2.0it/s]"
                   "\rtrain flame_gaussians:  40%|████      | 8/20 [00:06<00:10,  1.19it/s]\r")
    assert last_progress_line(log) == "train flame_gaussians: 40% 8/20 [00:06<00:10, 1.19it/s]"


def test_bench_render_writes_under_the_run_store_and_prints_each_row(tmp_path, monkeypatch):
    import torch

    from avatarbench.results.bench import bench_dir, run_render_bench

    monkeypatch.chdir(tmp_path)
    committed = sorted(p.stat().st_mtime_ns for p in bench_dir().glob("*")) if bench_dir().exists() else []
    lines = []
    threads = torch.get_num_threads()
    path = run_render_bench([40, 80], [16], backend="torch", repeats=1, echo=lines.append)
    assert path == __import__("pathlib").Path("runs") / "bench" / f"cpu-{__import__('platform').machine()}-{threads}threads.json"
    assert (tmp_path / path).exists() and (tmp_path / path).with_name(path.stem + "_render.png").exists()
    assert len(lines) == 2 + 2 and lines[1].split()[0] == "N"  # intro, header, one line per configuration
    assert [int(line.split()[0]) for line in lines[2:]] == [40, 80]
    after = sorted(p.stat().st_mtime_ns for p in bench_dir().glob("*")) if bench_dir().exists() else []
    assert after == committed  # the committed reports are not touched
