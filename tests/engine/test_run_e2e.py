"""End to end on the synthetic head: `avatarbench run` with the reference baseline (a few
iterations), run-folder rules, tables, cross-reenactment, reproducibility and a local sweep."""

from __future__ import annotations

import json

import pytest

from avatarbench.cli.main import main
from avatarbench.engine.config import RunRequest
from avatarbench.engine.run import execute, format_summary
from avatarbench.errors import RunExistsError

FAST = ("method.train.iterations=6", "protocol.max_frames=6", "engine.num_threads=1")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def base_run(store):
    return execute(RunRequest("flame_gaussians", "self_reenact", "smoke", sets=FAST + (f"output.root={store}",)),
                   progress=False)


def test_run_writes_a_complete_run_folder(base_run):
    rd, ed = base_run.run_dir, base_run.eval_dir
    for name in ("config.yaml", "environment.json", "run.json", "train_log.csv"):
        assert (rd / name).exists(), name
    assert list((rd / "checkpoints").glob("step_*.pt"))
    res = json.loads((ed / "results.json").read_text())
    assert res["num_frames"] == 6 and res["train"]["iterations"] == 6
    assert 5.0 < res["metrics"]["psnr"] < 60.0 and 0.0 < res["metrics"]["ssim"] <= 1.0
    # real LPIPS (both nets) from verified backbones, obtained on first use as a new user gets them
    for net in ("alex", "vgg"):
        assert 0.0 < res["metrics"][f"lpips_{net}"] < 1.0, res["lpips_status"]
        assert res["lpips_status"][net]["available"] and not res["lpips_status"][net]["test_only_random"]
    assert res["metrics"]["lpips"] == res["metrics"]["lpips_vgg"]
    assert f"LPIPS-vgg {res['metrics']['lpips_vgg']:.4f}" in format_summary(base_run)
    assert res["protocol"]["quantize_8bit"] is True
    assert len(list((ed / "renders").glob("*/*.png"))) == 6
    assert (ed / "metrics_per_image.csv").read_text().count("\n") == 7
    assert list((ed / "videos").glob("*.mp4"))
    env = json.loads((rd / "environment.json").read_text())
    assert env["versions"]["torch"] and "git" in env


def test_same_command_does_not_overwrite(base_run, store):
    before = (base_run.eval_dir / "results.json").read_bytes()
    again = execute(RunRequest("flame_gaussians", "self_reenact", "smoke", sets=FAST + (f"output.root={store}",)),
                    progress=False)
    assert again.reused and (base_run.eval_dir / "results.json").read_bytes() == before


def test_other_config_into_same_folder_is_refused(base_run, store):
    before = (base_run.eval_dir / "results.json").read_bytes()
    with pytest.raises(RunExistsError, match="different training config"):
        execute(RunRequest("flame_gaussians", "self_reenact", "smoke",
                           sets=FAST + ("engine.seed=5", f"output.root={store}")), base_run.run_dir, progress=False)
    assert (base_run.eval_dir / "results.json").read_bytes() == before


def test_second_split_reuses_the_trained_model(base_run, store):
    ck = sorted((base_run.run_dir / "checkpoints").glob("*.pt"))
    out = execute(RunRequest("flame_gaussians", "novel_view", "smoke", sets=FAST + (f"output.root={store}",)),
                  progress=False)
    assert out.run_dir == base_run.run_dir and sorted((out.run_dir / "checkpoints").glob("*.pt")) == ck
    assert out.results["split"] == "novel_view" and out.results["metrics"]["psnr"] > 5


def test_cross_reenact_writes_videos_and_no_metrics(base_run, store):
    out = execute(RunRequest("flame_gaussians", "cross_reenact", "smoke", sets=FAST + (f"output.root={store}",)),
                  progress=False)
    assert out.results["metrics"] == {} and out.results["videos"]
    assert not (out.eval_dir / "metrics_per_image.csv").exists()


def test_table_and_reproducibility(base_run, store, capsys):
    main(["table", "--root", str(store)])
    text = capsys.readouterr().out
    # FAST's overrides make this a configuration of its own, labelled with its keys; the default
    # subject is the full-phenomena world, which is labelled too (never averaged with other worlds)
    assert "flame_gaussians (smoke+set(method.train.iterations=6, protocol.max_frames=6) · world full)" in text
    assert "self_reenact PSNR" in text and "nan" not in text
    assert (store / "tables" / "main.tex").read_text().count("\\toprule") == 1
    from avatarbench.engine.reproduce import check_reproducibility

    rep = check_reproducibility(base_run.run_dir, "self_reenact")
    assert rep["checkpoint_resave_identical"] and rep["rerender_identical"] and rep["offline_eval_within_1e-6"]


def test_local_sweep_reports_failures_and_lands_in_the_store(store, tmp_path):
    from avatarbench.engine.sweep import Job, load_manifest, run_sweep

    root = tmp_path / "sweep_store"
    good = Job("flame_gaussians", "synth_head_a", "self_reenact", sets=list(FAST[:2]) + ["engine.num_threads=1"])
    bad = Job("flame_gaussians", "synth_head_a", "self_reenact", sets=["engine.no_such_key=1"])
    manifest, jobs = run_sweep([good, bad], root, name="t", executor="local", parallel=1, echo=lambda *a: None)
    assert [j.status for j in jobs] == ["done", "failed"]
    assert "engine.no_such_key" in jobs[1].error
    assert list(root.glob("synth_head_a/flame_gaussians/smoke/eval/self_reenact/results.json"))
    name, _, reloaded = load_manifest(manifest)
    assert [j.status for j in reloaded] == ["done", "failed"]
    # re-running the sweep re-runs only what is not done
    manifest, jobs2 = run_sweep(reloaded, root, name=name, executor="inline", echo=lambda *a: None)
    assert jobs2[0].status == "done" and jobs2[1].status == "failed"
