"""`avatarbench table` never averages runs whose configuration differs.

Real run folders are produced by `execute` with the toy method (tests/engine/toy.py) standing in
for the method and subject, so each run takes about a second; the configs are the real
flame_gaussians / gaussian_avatars smoke configs, so config hashes and labels are the real ones.
"""

from __future__ import annotations

import json

import pytest

import avatarbench.engine.run as run_mod
from avatarbench.cli.main import main
from avatarbench.engine.config import RunRequest
from avatarbench.results.table import _overrides, main_table, paper_rows, results_frame
from tests.engine.toy import ToyMethod, toy_subject


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("table_store")
    subject = toy_subject(tmp_path_factory.mktemp("toy_data"), size=(40, 32))  # LPIPS/SSIM need >= 32 px
    # the toy subject has no self_reenact frames: give it the novel-view frames under that name too
    subject._frames["self_reenact"] = list(subject._frames["novel_view"])
    mp = pytest.MonkeyPatch()
    mp.setattr(run_mod, "load_run_subject", lambda cfg: subject)
    # iterations follow the config, so configs that differ also train differently
    mp.setattr(run_mod, "load_method_class",
               lambda name: lambda cfg, s, d: ToyMethod(cfg, s, d, iterations=int(cfg.train.iterations) // 1000 + 2))

    def go(method, split, sets=(), output=None, ablation=None):
        req = RunRequest(method, split, "smoke", ablation=ablation, sets=(f"output.root={root}",) + tuple(sets))
        return run_mod.execute(req, output, progress=False, echo=lambda *a: None).results

    runs = {
        "seed0": go("flame_gaussians", "novel_view"),
        "seed0_sr": go("flame_gaussians", "self_reenact"),
        "seed1": go("flame_gaussians", "novel_view", ["engine.seed=1"]),
        # the README's example: a quick run with fewer iterations into its own folder
        "try1": go("flame_gaussians", "novel_view", ["method.train.iterations=4000"], root / "try1"),
        "maxf": go("flame_gaussians", "novel_view", ["protocol.max_frames=2"], root / "maxf"),
        # the same override on another split (whose protocol differs by design) joins the same row
        "maxf_sr": go("flame_gaussians", "self_reenact", ["protocol.max_frames=2"], root / "maxf"),
        "ga": go("gaussian_avatars", "novel_view"),
    }
    yield root, runs
    mp.undo()


def _row(df, label):
    hits = [i for i in df.index if i == label]
    assert hits, f"no row {label!r} in {list(df.index)}"
    return df.loc[label]


def test_runs_with_different_training_configs_stay_apart(store):
    root, runs = store
    num, disp = main_table(results_frame(root))
    psnr = lambda k: runs[k]["metrics"]["psnr"]  # noqa: E731
    assert psnr("seed0") != psnr("try1")
    smoke = _row(num, "flame_gaussians (smoke)")
    # two seeds of one config are averaged (and counted); nothing else joins them
    assert smoke["novel_view PSNR↑"] == pytest.approx((psnr("seed0") + psnr("seed1")) / 2, abs=1e-12)
    assert _row(disp, "flame_gaussians (smoke)")["novel_view n"] == "2 runs / 2 seeds"
    fewer = _row(num, "flame_gaussians (smoke+set(method.train.iterations=4000))")
    assert fewer["novel_view PSNR↑"] == pytest.approx(psnr("try1"), abs=1e-12)
    # a protocol override is a configuration of its own too
    maxf = _row(num, "flame_gaussians (smoke+set(protocol.max_frames=2))")
    assert maxf["novel_view PSNR↑"] == pytest.approx(psnr("maxf"), abs=1e-12)
    assert maxf["self_reenact PSNR↑"] == pytest.approx(psnr("maxf_sr"), abs=1e-12)
    assert len([i for i in num.index if i.startswith("flame_gaussians")]) == 3
    # the config hash recorded by each run folder separates them: same group <=> same model identity
    df = results_frame(root)
    nv = df[(df.method == "flame_gaussians") & (df.split == "novel_view")]
    assert nv.groupby("config")["group"].nunique().max() == 1
    assert nv["group"].nunique() == 3


def test_missing_cells_are_dashes_and_every_claimed_column_is_shown(store, capsys):
    root, runs = store
    main(["table", "--root", str(root)])
    text = capsys.readouterr().out
    assert "nan" not in text.lower().replace("nance", "")
    num, disp = main_table(results_frame(root))
    # only the seed-0 run was scored on self_reenact: the +set rows have no such cell
    row = _row(disp, "flame_gaussians (smoke+set(method.train.iterations=4000))")
    assert row["self_reenact PSNR↑"] == "–" and row["self_reenact n"] == "–"
    assert _row(disp, "flame_gaussians (smoke)")["self_reenact n"] == "1 run / 1 seed"
    # both LPIPS columns are always shown; null (no verified backbone) is shown as – with a note
    assert {"novel_view LPIPS-VGG↓", "novel_view LPIPS-Alex↓"} <= set(disp.columns)
    if runs["seed0"]["metrics"]["lpips_vgg"] is None:
        assert set(disp["novel_view LPIPS-VGG↓"]) == {"–"}
        assert "shown as –" in text
    else:  # verified weights (docs/protocols.md): a number, and no claim that it is missing
        cell = _row(disp, "flame_gaussians (smoke)")["novel_view LPIPS-VGG↓"]
        assert cell != "–" and float(cell) > 0
        assert "shown as –" not in text
    assert "shown as n/a" not in text
    # published numbers (gaussian_avatars is present): the markers are explained in one line, and
    # rows whose task is 'unknown' are left out with a line saying so
    assert "| gaussian_avatars " in text
    marker_lines = [line for line in text.splitlines() if "SECONDARY =" in line]
    assert len(marker_lines) == 1 and "UNVERIFIED =" in marker_lines[0]
    from avatarbench.metrics.paper_numbers import load_paper_results

    paper = load_paper_results()
    ga = paper[paper["method_id"] == "gaussian_avatars"]
    shown, n_unknown = paper_rows(results_frame(root))
    assert n_unknown == int((ga["task"] == "unknown").sum()) >= 1
    assert "unknown" not in set(shown["task"]) and len(shown) == len(ga) - n_unknown
    assert f"{n_unknown} published row(s) with task 'unknown'" in text
    # saved CSV holds numbers (empty for missing), the LaTeX has no nan either
    csv = (root / "tables" / "main.csv").read_text()
    assert "nan" not in csv.lower()
    assert "nan" not in (root / "tables" / "main.tex").read_text().lower()


def test_override_labels_ignore_keys_the_schema_added_later():
    ours = {"a": 1, "b": 2, "old": 5}
    ref = {"a": 1, "b": 3, "new": 7}
    assert _overrides(ours, ref) == ["b=2"]


def test_record_without_run_json_is_never_merged(store, tmp_path):
    root, runs = store
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "toy" / "flame_gaussians" / "smoke-seed1" / "run.json").unlink()
    num, disp = main_table(results_frame(copy))
    smoke = _row(num, "flame_gaussians (smoke)")
    assert smoke["novel_view PSNR↑"] == pytest.approx(runs["seed0"]["metrics"]["psnr"], abs=1e-12)
    sha = json.loads((copy / "toy/flame_gaussians/smoke-seed1/eval/novel_view/results.json").read_text())["config_sha"]
    assert f"flame_gaussians (smoke#{sha[:6]})" in num.index


def test_world_variants_of_a_synthetic_subject_are_separate_rows():
    from avatarbench.results.table import synthetic_world

    assert synthetic_world("synth_head_a") == "clean"
    assert synthetic_world("synth_head_a_clean") == "clean"
    assert synthetic_world("synth_head_a_full") == "full"
    assert synthetic_world("synth_body_a_garment_dynamics") == "garment_dynamics"
    assert synthetic_world("306") is None
    assert synthetic_world("synth_head_a_nonsense") is None
