"""CLI behaviour that needs no trained model: listing, and one-line errors with exit status 2."""

from __future__ import annotations

import pytest

from avatarbench.cli.main import main


def _run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_methods_lists_baseline(capsys):
    main(["methods"])
    assert "flame_gaussians" in capsys.readouterr().out


def test_unknown_method_is_one_line_error(capsys, tmp_path):
    code, out, err = _run(["run", "--method", "nerf_but_wrong", "--output", str(tmp_path / "r")], capsys)
    assert code == 2
    assert err.strip().startswith("error: unknown method 'nerf_but_wrong'")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_bad_set_key_is_one_line_error(capsys, tmp_path):
    code, _, err = _run(["run", "-m", "flame_gaussians", "--set", "engine.sead=1", "--output", str(tmp_path / "r")],
                        capsys)
    assert code == 2 and "engine.sead" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_table_on_empty_store(capsys, tmp_path):
    main(["table", "--root", str(tmp_path)])
    assert "no results" in capsys.readouterr().out
