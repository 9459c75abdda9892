"""Config resolution: layering, presets, ablations, --set overrides and their errors."""

from __future__ import annotations

import pytest

from avatarbench.engine.config import RunRequest, resolve_config, training_identity
from avatarbench.engine.registry import get_spec, list_methods
from avatarbench.errors import ConfigError


def test_registry_lists_methods_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys; from avatarbench.engine.registry import list_methods; s = list_methods(); "
            "assert 'flame_gaussians' in s and s['flame_gaussians'].kind == 'head'; "
            "assert 'torch' not in sys.modules, 'listing methods imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        get_spec("nope")


def test_layers_preset_and_set_override():
    cfg = resolve_config(RunRequest("flame_gaussians", "self_reenact", "smoke"))
    assert cfg.method.train.iterations == 300  # method smoke preset
    assert cfg.data.scale == 0.5  # shared smoke preset
    assert cfg.engine.device == "cpu"
    assert cfg.protocol.name == "self_reenact"
    cfg2 = resolve_config(RunRequest("flame_gaussians", "novel_view", "smoke",
                                     sets=("method.train.iterations=7", "engine.seed=3", "data.num_train_views=6")))
    assert cfg2.method.train.iterations == 7 and isinstance(cfg2.method.train.iterations, int)
    assert cfg2.engine.seed == 3 and cfg2.data.num_train_views == 6
    assert cfg2.protocol.name == "novel_view"


def test_bad_set_key_is_one_line_error_naming_the_key():
    with pytest.raises(ConfigError) as e:
        resolve_config(RunRequest("flame_gaussians", sets=("method.train.iteratons=5",)))
    msg = str(e.value)
    assert "method.train.iteratons" in msg and "iterations" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="expected key=value"):
        resolve_config(RunRequest("flame_gaussians", sets=("engine.seed",)))


def test_unknown_preset_split_ablation():
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve_config(RunRequest("flame_gaussians", preset="huge"))
    with pytest.raises(ConfigError, match="unknown split"):
        resolve_config(RunRequest("flame_gaussians", split="nvs"))
    with pytest.raises(ConfigError, match="unknown ablation"):
        resolve_config(RunRequest("flame_gaussians", ablation="no_such"))


def test_training_identity_ignores_the_split():
    a = training_identity(resolve_config(RunRequest("flame_gaussians", "novel_view")))
    b = training_identity(resolve_config(RunRequest("flame_gaussians", "self_reenact")))
    c = training_identity(resolve_config(RunRequest("flame_gaussians", "self_reenact", sets=("engine.seed=1",))))
    assert a == b and a != c


def test_every_method_config_resolves_all_presets_and_ablations():
    for name, spec in list_methods().items():
        for preset in spec.presets or ("smoke",):
            resolve_config(RunRequest(name, preset=preset))
        for ab in spec.ablations:
            resolve_config(RunRequest(name, ablation=ab))
