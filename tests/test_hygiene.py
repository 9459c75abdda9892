"""A test session leaves nothing large behind in the system temp folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_session_removes_its_temp_home_and_passed_tests_folders(tmp_path):
    root = Path(__file__).resolve().parents[1]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "test_probe.py").write_text(
        "import os\n"
        "def test_writes(tmp_path):\n"
        "    (tmp_path / 'big.bin').write_bytes(b'0' * 100000)\n"
        "    assert os.path.isdir(os.environ['AVATARBENCH_HOME'])\n")
    (probe / "conftest.py").write_text((root / "tests" / "conftest.py").read_text())
    env = {k: v for k, v in os.environ.items() if k != "AVATARBENCH_HOME"}
    env["TMPDIR"] = str(scratch)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
                        str(root / "pyproject.toml"), "--rootdir", str(probe), str(probe)],
                       env=env, capture_output=True, text=True, cwd=probe, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not list(scratch.glob("avatarbench-test-home-*"))
    assert not [p for p in scratch.rglob("big.bin")]
