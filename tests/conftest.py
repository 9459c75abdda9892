"""Test-session setup: no wandb, a private cache, deterministic CPU threads, gpu marker."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("WANDB_SILENT", "true")
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
