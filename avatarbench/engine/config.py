"""Resolving the run configuration: one OmegaConf tree from layered YAML and ``--set`` overrides.

Layers, later wins::

    configs/defaults.yaml                     engine / data / render / output defaults
    configs/protocols/<split>.yaml            the evaluation protocol of the split
    configs/methods/<method>.yaml: method     the method's official defaults (under `method:`)
    configs/presets/<preset>.yaml             shared part of the preset (engine / data)
    configs/methods/<method>.yaml: presets.<preset>      the method's part of the preset
    configs/methods/<method>.yaml: ablations.<variant>   an ablation variant
    --set key=value ...                       command-line overrides (must name existing keys)

The result is in struct mode: a ``--set`` of an unknown key is a :class:`ConfigError` that names
the key and the keys that do exist at that level.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from avatarbench.engine.registry import get_spec
from avatarbench.errors import ConfigError
from avatarbench.paths import configs_dir

SPLITS = ("novel_view", "self_reenact", "cross_reenact")
DEFAULT_SUBJECT = {"head": "synth_head_a", "body": "synth_body_a"}


@dataclass(frozen=True)
class RunRequest:
    """What the user asked for (the CLI's options)."""

    method: str
    split: str = "self_reenact"
    preset: str = "smoke"
    ablation: str | None = None
    sets: tuple[str, ...] = ()
    subject: str | None = None
    data_path: str | None = None


def _load(path) -> DictConfig:
    try:
        return OmegaConf.load(path)
    except Exception as e:
        raise ConfigError(f"{path}: not valid YAML ({e.__class__.__name__}: {e})") from None


def parse_set(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set method.train.iterations=100")
    key, value = item.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set {item!r}: empty key")
    return key.strip(), value


def apply_sets(cfg: DictConfig, sets) -> None:
    """Apply ``key=value`` overrides in place; unknown keys raise ConfigError."""
    for item in sets:
        key, value = parse_set(item)
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not isinstance(parent, DictConfig) or leaf not in parent:
            where = f"'{parent_key}'" if parent_key else "the top level"
            valid = sorted(parent.keys()) if isinstance(parent, DictConfig) else []
            raise ConfigError(f"--set {key}: unknown key (valid keys under {where}: {', '.join(map(str, valid))})")
        try:
            # parse YAML scalars (numbers, booleans, lists) like the YAML files do
            OmegaConf.update(cfg, key, _yaml_value(value), merge=False)
        except (ConfigKeyError, ConfigAttributeError, OmegaConfBaseException) as e:
            raise ConfigError(f"--set {key}={value}: {e.__class__.__name__}: {str(e).splitlines()[0]}") from None


def _yaml_value(value: str):
    import yaml

    try:
        return yaml.safe_load(value) if value.strip() else value
    except yaml.YAMLError:
        return value


def resolve_config(req: RunRequest) -> DictConfig:
    """Build the full, resolved, struct-mode run config for a request."""
    if req.split not in SPLITS:
        raise ConfigError(f"unknown split {req.split!r} (expected one of: {', '.join(SPLITS)})")
    spec = get_spec(req.method)
    root = configs_dir()
    method_file = _load(spec.config_file)
    layers = [_load(root / "defaults.yaml"), _load(root / "protocols" / f"{req.split}.yaml"),
              OmegaConf.create({"method": method_file.get("method", {})})]
    if spec.kind == "body":
        layers.insert(2, _load(root / "protocols" / "kinds" / "body.yaml"))
    preset_file = root / "presets" / f"{req.preset}.yaml"
    method_presets = method_file.get("presets", {}) or {}
    if not preset_file.exists() and req.preset not in method_presets:
        raise ConfigError(f"unknown preset {req.preset!r} for {req.method} (available: "
                          f"{', '.join(sorted(set(method_presets) | {p.stem for p in (root / 'presets').glob('*.yaml')}))})")
    if preset_file.exists():
        layers.append(_load(preset_file))
    if req.preset in method_presets:
        layers.append(method_presets[req.preset] or OmegaConf.create({}))
    if req.ablation:
        ablations = method_file.get("ablations", {}) or {}
        if req.ablation not in ablations:
            raise ConfigError(f"unknown ablation {req.ablation!r} for {req.method} "
                              f"(available: {', '.join(sorted(ablations)) or 'none'})")
        layers.append(ablations[req.ablation] or OmegaConf.create({}))
    base = layers[0]
    OmegaConf.set_struct(base, False)
    cfg = OmegaConf.merge(*layers)
    # keys introduced by presets/ablations must already exist in the defaults: catch typos there too
    n_base = 4 if spec.kind == "body" else 3
    _check_known_keys(OmegaConf.merge(*layers[:n_base]), layers[n_base:], spec.config_file)
    cfg.run = OmegaConf.create({"method": req.method, "split": req.split, "preset": req.preset,
                                "ablation": req.ablation, "kind": spec.kind})
    if req.subject:
        cfg.data.subject = req.subject
    if req.data_path:
        cfg.data.path = req.data_path
    if not cfg.data.subject and not cfg.data.path:
        cfg.data.subject = DEFAULT_SUBJECT[spec.kind]
    OmegaConf.set_struct(cfg, True)
    apply_sets(cfg, req.sets)
    OmegaConf.resolve(cfg)
    return cfg


def _check_known_keys(base: DictConfig, overlays, where) -> None:
    def walk(over, ref, prefix):
        for k, v in over.items():
            key = f"{prefix}{k}"
            if not isinstance(ref, DictConfig) or k not in ref:
                raise ConfigError(f"{where}: preset/ablation sets unknown key {key!r}")
            if isinstance(v, DictConfig) and isinstance(ref[k], DictConfig) and len(ref[k]) > 0:
                walk(v, ref[k], key + ".")

    for over in overlays:
        if isinstance(over, DictConfig):
            walk(over, base, "")


def training_identity(cfg: DictConfig) -> dict:
    """The part of the config that determines the trained model (everything but the protocol)."""
    c = OmegaConf.to_container(cfg, resolve=True)
    c.pop("protocol", None)
    c.get("run", {}).pop("split", None)
    c.get("data", {}).pop("driver", None)
    c.get("data", {}).pop("driver_split", None)
    if c.get("data", {}).get("protocol", "set") is None:  # unset: keep the identity (and sha) of older runs
        c["data"].pop("protocol")
    c.pop("output", None)
    return c
