"""The explicit package list in pyproject.toml matches the tree (methods/ and configs/ are mapped
under the avatarbench namespace; no top-level `methods`, `configs` or `datasets` package)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPING = {"avatarbench": "avatarbench", "avatarbench.methods": "methods", "avatarbench.configs": "configs"}


def _packages_in_tree() -> set[str]:
    found = set()
    for pkg, folder in MAPPING.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if "__pycache__" in rel.parts:
                continue
            found.add(".".join([pkg, *rel.parts]) if rel.parts else pkg)
    return found


def test_pyproject_lists_every_package():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    assert conf["package-dir"] == MAPPING
    missing = _packages_in_tree() - listed
    assert not missing, f"add to pyproject.toml [tool.setuptools] packages: {sorted(missing)}"


def test_no_generic_top_level_packages():
    import importlib.util

    for name in ("datasets", "methods", "configs"):
        spec = importlib.util.find_spec(name)
        assert spec is None or "avatarbench" not in str(spec.origin or ""), name
    assert not (ROOT / "datasets" / "__init__.py").exists()
