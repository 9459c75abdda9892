"""Fixtures of the reliability tests: one tiny finished run folder, shared read-only per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.reliability.helpers import cli, tiny_run_args


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """A finished 4-step flame_gaussians run with its self_reenact evaluation (do not modify; copy it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    proc = cli(*tiny_run_args(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A private copy of :func:`finished_run` that a test may damage."""
    dst = tmp_path / "run"
    shutil.copytree(finished_run, dst)
    return dst
