"""Test-session setup: no wandb, a private cache, deterministic CPU threads, gpu marker."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("WANDB_SILENT", "true")
# Synthetic subjects and stand-in models are generated once per test session into a private
# cache (unless the caller points AVATARBENCH_HOME somewhere, e.g. CI's persistent cache).
os.environ.setdefault("AVATARBENCH_HOME", tempfile.mkdtemp(prefix="avatarbench-test-home-"))


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
