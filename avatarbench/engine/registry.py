"""Data-only method registry: method name -> spec (class path, kind, description, paper).

Specs are read from ``configs/methods/<name>.yaml`` with OmegaConf only, so listing methods
(``avatarbench --help``, ``avatarbench methods``) never imports torch or a method's code.
The class is imported on demand by :func:`load_method_class`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from avatarbench.errors import ConfigError
from avatarbench.paths import configs_dir


@dataclass(frozen=True)
class MethodSpec:
    """What the registry knows about a method without importing it."""

    name: str
    class_path: str  # "package.module:Class"
    kind: str  # head | body
    description: str
    config_file: Path
    paper: dict = field(default_factory=dict)
    presets: tuple[str, ...] = ()
    ablations: tuple[str, ...] = ()


@lru_cache(maxsize=1)
def list_methods() -> dict[str, MethodSpec]:
    """All registered methods, by name."""
    from omegaconf import OmegaConf

    specs: dict[str, MethodSpec] = {}
    for path in sorted((configs_dir() / "methods").glob("*.yaml")):
        try:
            node = OmegaConf.load(path)
        except Exception as e:
            raise ConfigError(f"{path}: not valid YAML ({e.__class__.__name__})") from None
        spec = node.get("spec")
        if spec is None or "name" not in spec or "class" not in spec:
            raise ConfigError(f"{path}: missing 'spec.name' / 'spec.class' (a method file needs a spec node)")
        specs[spec.name] = MethodSpec(
            name=str(spec.name),
            class_path=str(spec["class"]),
            kind=str(spec.get("kind", "head")),
            description=str(spec.get("description", "")),
            config_file=path,
            paper=OmegaConf.to_container(spec.get("paper", {})) or {},
            presets=tuple(node.get("presets", {}) or {}),
            ablations=tuple(node.get("ablations", {}) or {}),
        )
    return specs


def get_spec(name: str) -> MethodSpec:
    methods = list_methods()
    if name not in methods:
        raise ConfigError(f"unknown method {name!r} (available: {', '.join(sorted(methods)) or 'none'})")
    return methods[name]


def load_method_class(name: str):
    """Import and return the method's class (this is where torch-heavy imports happen)."""
    spec = get_spec(name)
    module_name, _, attr = spec.class_path.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{spec.config_file}: spec.class {spec.class_path!r} cannot be imported ({e})") from e
