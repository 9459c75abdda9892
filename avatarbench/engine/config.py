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
#: The subject a run uses when none is given: the synthetic identity in the world with every phenomenon on
#: (docs/synthetic_world.md). The bare names (synth_head_a, ...) are the clean world, kept for the
#: per-phenomenon study and fast unit tests.
DEFAULT_SUBJECT = {"head": "synth_head_a_full", "body": "synth_body_a_full"}


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
        new = _yaml_value(value)
        _check_type(key, value, parent[leaf], new)
        try:
            # parse YAML scalars (numbers, booleans, lists) like the YAML files do
            OmegaConf.update(cfg, key, new, merge=False)
        except (ConfigKeyError, ConfigAttributeError, OmegaConfBaseException) as e:
            raise ConfigError(f"--set {key}={value}: {e.__class__.__name__}: {str(e).splitlines()[0]}") from None


def _kind(v) -> str | None:
    if isinstance(v, bool):
        return "a boolean (true/false)"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    return None


def _check_type(key: str, text: str, old, new) -> None:
    """A ``--set`` value must have the type of the value it replaces (numbers stay numbers).

    An integer key takes only whole numbers (``2.5`` is refused, never truncated); a float key
    takes integers too; a boolean key only ``true``/``false``; keys that are ``null`` by default
    take anything.
    """
    want = _kind(old)
    if want is None:
        return
    ok = (isinstance(new, bool) if isinstance(old, bool)
          else isinstance(new, int) and not isinstance(new, bool) if isinstance(old, int)
          else isinstance(new, (int, float)) and not isinstance(new, bool))
    if not ok:
        raise ConfigError(f"--set {key}={text}: expected {want} (the default is {old!r})")


def _iteration_keys(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                yield from _iteration_keys(v, key + ".")
            elif str(k).endswith("iterations"):
                yield key, v


def validate_config(cfg: DictConfig) -> None:
    """Type and range checks of the resolved config, done before anything is written.

    Every ``*iterations`` key under ``method`` is a whole number >= 0; engine counters are
    positive (``log_every``) or non-negative (``checkpoint_every``, ``eval_every``,
    ``num_threads``, ``keep_checkpoints``); ``data.scale`` is positive. The total number of
    training steps (> 0) is checked by :func:`check_total_iterations` once the method exists.
    """
    c = OmegaConf.to_container(cfg, resolve=True)
    for key, v in _iteration_keys(c.get("method", {}), "method."):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{key}={v!r}: expected a whole number of iterations")
        if v < 0:
            raise ConfigError(f"{key}={v}: expected a number of iterations >= 0")
    eng = c.get("engine", {})
    for key, minimum in (("log_every", 1), ("checkpoint_every", 0), ("eval_every", 0), ("num_threads", 0),
                         ("keep_checkpoints", 0), ("eval_frames", 0), ("seed", 0)):
        v = eng.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ConfigError(f"engine.{key}={v!r}: expected a whole number >= {minimum}")
    scale = c.get("data", {}).get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0):
        raise ConfigError(f"data.scale={scale!r}: expected a positive number")


def check_total_iterations(cfg: DictConfig, total: int) -> None:
    """A run must train: ``total`` (the method's summed stage iterations) must be > 0."""
    if int(total) <= 0:
        keys = [k for k, _ in _iteration_keys(OmegaConf.to_container(cfg.method, resolve=True), "method.")]
        raise ConfigError(f"{cfg.run.method} would train for {total} iterations: set "
                          f"{' / '.join(keys[:3]) or 'its iterations'} to a value > 0")


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
    """The part of the config that determines the trained model.

    Everything but the protocol, the output location and the settings that only change what is
    shown or kept (progress bars, ``--quiet``, thread count, logging, checkpoint retention,
    image cache size): a run interrupted with ``--quiet`` resumes without it.
    """
    c = OmegaConf.to_container(cfg, resolve=True)
    c.pop("protocol", None)
    c.get("run", {}).pop("split", None)
    c.get("data", {}).pop("driver", None)
    c.get("data", {}).pop("driver_split", None)
    if c.get("data", {}).get("protocol", "set") is None:  # unset: keep the identity (and sha) of older runs
        c["data"].pop("protocol")
    c.pop("output", None)
    eng = c.get("engine", {})
    for key in NON_IDENTITY_ENGINE_KEYS:  # do not change the trained model
        eng.pop(key, None)
    c.get("data", {}).pop("cache_images_gb", None)
    return c


#: engine settings that do not change the trained model (display, logging, threads, retention)
NON_IDENTITY_ENGINE_KEYS = ("progress", "num_threads", "wandb", "log_every", "keep_checkpoints")


def strip_identity(identity: dict) -> dict:
    """An identity saved by an older version, with the keys that no longer count removed."""
    import copy

    c = copy.deepcopy(identity)
    for key in NON_IDENTITY_ENGINE_KEYS:
        c.get("engine", {}).pop(key, None)
    c.get("data", {}).pop("cache_images_gb", None)
    return c
