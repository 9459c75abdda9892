"""Where things live: the cache (synthetic subjects, model files) and the shipped configs.

Cache root, first that is set:
  1. ``$AVATARBENCH_HOME``
  2. ``$XDG_CACHE_HOME/avatarbench``
  3. ``~/.cache/avatarbench``
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of avatarbench's cache (created on demand)."""
    if os.environ.get("AVATARBENCH_HOME"):
        root = Path(os.environ["AVATARBENCH_HOME"])
    elif os.environ.get("XDG_CACHE_HOME"):
        root = Path(os.environ["XDG_CACHE_HOME"]) / "avatarbench"
    else:
        root = Path.home() / ".cache" / "avatarbench"
    root.mkdir(parents=True, exist_ok=True)
    return root


def configs_dir() -> Path:
    """The folder of shipped OmegaConf YAML (repo ``configs/``, installed as ``avatarbench.configs``)."""
    import avatarbench.configs as _c

    return Path(_c.__file__).parent


def repo_root() -> Path | None:
    """The source checkout's root when running from one (used to find ``results/``), else None."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").exists() else None
