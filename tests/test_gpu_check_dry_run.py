"""The GPU check's dry run (benchmarks/gpu_check.sh --dry-run) works end to end on the CPU, so the script
cannot rot between the sessions that are lent a GPU (docs/gpu.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    p = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(out), "--dry-run"],
                       capture_output=True, text=True, timeout=1200, env={**os.environ, "PYTHON": sys.executable})
    return out, p


def test_dry_run_passes_every_step(dry_run):
    out, p = dry_run
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    reports = [f for f in out.glob("*.json") if f.name != "gpu_check.json"]
    assert len(reports) == 1, list(out.iterdir())
    rep = json.loads(reports[0].read_text())
    steps = rep["gpu_check"]["steps"]
    assert set(steps) >= {"environment", "gsplat_jit", "parity", "pytest_gpu", "renderer_fps", "method_speed",
                          "correctness"}
    assert all(s["ok"] for s in steps.values()), {k: s.get("error") for k, s in steps.items()}
    assert rep["gpu_check"]["dry_run"] is True and rep["gpu_check"]["failed_steps"] == []


def test_dry_run_report_has_bench_schema_and_real_measurements(dry_run):
    out, _ = dry_run
    rep = json.loads(next(f for f in out.glob("*.json") if f.name != "gpu_check.json").read_text())
    # same sections as the CPU report of `avatarbench bench`
    assert rep["render"]["rows"] and rep["methods"]["rows"]
    assert {r["method"] for r in rep["methods"]["rows"]} == {"gaussian_avatars", "gaussian_head_avatar",
                                                               "animatable_gaussians"}
    for r in rep["methods"]["rows"]:
        assert "error" not in r, r
        assert r["train_it_per_s"] > 0 and r["render_fps"] > 0 and r["num_gaussians"] > 0
    par = rep["gpu_check"]["steps"]["parity"]["result"]
    assert par["ok"] and len(par["rows"]) >= 6
    # RGB and 32 channels, with and without a background, each with gradients compared
    assert {(r["channels"], r["background"]) for r in par["rows"]} >= {(3, True), (3, False), (32, True), (32, False)}
    for r in par["rows"]:
        assert r["images"]["max_abs"] < 1e-2 and "grad_means" in r and "grad_opacities" in r
        if r["background"]:
            assert "grad_backgrounds" in r
    corr = rep["gpu_check"]["steps"]["correctness"]["result"]
    assert {r["method"] for r in corr["rows"]} == {"gaussian_avatars", "gaussian_head_avatar"}
    assert list(out.glob("*_gpu_check.png"))


def test_refuses_to_run_without_cuda_unless_dry_run(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "no CUDA device" in p.stderr and "--dry-run" in p.stderr
