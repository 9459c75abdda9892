"""Every CLI option explains itself; `run --help` names every preset; `config` prints the
resolved config that `--set` keys refer to."""

from __future__ import annotations

import click
import yaml

from avatarbench.cli.main import cli, main


def _commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))


def test_every_option_has_help_text():
    missing = [f"{' '.join(path)} {opt.opts[0]}" for path, cmd in _commands(cli) for opt in cmd.params
               if isinstance(opt, click.Option) and not (opt.help or "").strip()]
    assert missing == []


def test_run_help_lists_every_preset_including_method_presets(capsys):
    from avatarbench.engine.registry import list_methods

    main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    presets = {p for s in list_methods().values() for p in s.presets} | {"smoke", "paper"}
    assert "gpu30k" in presets
    for p in presets:
        assert p in text, p


def test_config_prints_the_resolved_config_with_overrides(capsys):
    main(["config", "-m", "flame_gaussians", "--set", "method.train.iterations=123"])
    out = capsys.readouterr().out
    cfg = yaml.safe_load(out)
    assert cfg["method"]["train"]["iterations"] == 123
    assert cfg["engine"]["num_threads"] == 1 and cfg["data"]["scale"] == 0.5  # the smoke preset
    assert cfg["protocol"]["split"] == "self_reenact"
    main(["config", "-m", "flame_gaussians", "-p", "paper"])
    assert yaml.safe_load(capsys.readouterr().out)["data"]["scale"] == 1.0
