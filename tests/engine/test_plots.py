"""Figures: bars from 0 with value labels and n/a markers, one row per configuration; labelled
training curves without empty panels; a nearest-neighbour qualitative grid; no warnings."""

from __future__ import annotations

import warnings

import pytest

import avatarbench.engine.run as run_mod
from avatarbench.engine.config import RunRequest
from avatarbench.results import plots
from tests.engine.toy import ToyMethod, toy_subject


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("plot_store")
    subject = toy_subject(tmp_path_factory.mktemp("toy_data"), size=(40, 32))
    subject._frames["self_reenact"] = list(subject._frames["novel_view"])
    mp = pytest.MonkeyPatch()
    mp.setattr(run_mod, "load_run_subject", lambda cfg: subject)
    mp.setattr(run_mod, "load_method_class",
               lambda name: lambda cfg, s, d: ToyMethod(cfg, s, d, iterations=int(cfg.train.iterations) // 1000 + 2))
    runs = {}
    for key, split, sets, out in [("a_nv", "novel_view", (), None), ("a_sr", "self_reenact", (), None),
                                  ("b_nv", "novel_view", ("method.train.iterations=4000",), root / "b")]:
        req = RunRequest("flame_gaussians", split, "smoke", sets=(f"output.root={root}",) + sets)
        runs[key] = run_mod.execute(req, out, progress=False, echo=lambda *a: None)
    yield root, runs, subject
    mp.undo()


@pytest.fixture()
def captured(monkeypatch):
    figs = []

    def save(fig, path):
        figs.append((path.name, fig))
        return [path.with_suffix(".png")]

    monkeypatch.setattr(plots, "_save", save)
    monkeypatch.setattr(plots._plt(), "close", lambda fig: None)
    return figs


def test_bar_chart_starts_at_zero_labels_values_and_marks_missing_bars(store, captured, tmp_path):
    root, runs, _ = store
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.bar_charts(root, tmp_path)
    fig = dict(captured)["bars_psnr"]
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0.0
    texts = [t.get_text() for t in ax.texts]
    # the +set configuration was never scored on self_reenact: its bar is marked, not drawn as 0
    assert texts.count("n/a") == 1
    for key in ("a_nv", "a_sr", "b_nv"):
        assert f"{runs[key].results['metrics']['psnr']:.2f}" in texts
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["flame_gaussians (smoke)", "flame_gaussians (smoke+set(method.train.iterations=4000))"]
    # a metric with no value at all gets no (empty) chart; with verified LPIPS weights it has values
    has_lpips = any(r.results["metrics"].get("lpips_vgg") is not None for r in runs.values())
    assert ("bars_lpips_vgg" in dict(captured)) == has_lpips


def test_training_curves_label_each_run_and_draw_no_empty_panel(store, captured, tmp_path):
    root, runs, _ = store
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "No artists with labels found to put in legend"
        plots.training_curves([runs["a_nv"].run_dir, runs["b_nv"].run_dir], tmp_path / "curves")
    (name, fig), = captured
    assert len(fig.axes) == 1  # no periodic evaluation logged: the loss panel only
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(labels) == 2 and len(set(labels)) == 2


def test_grid_is_nearest_neighbour_and_says_resolution_and_run(store, captured, tmp_path):
    root, runs, subject = store
    gt = {f.key: f.image().numpy() for f in subject.frames("novel_view")}
    eval_dirs = {"flame_gaussians (smoke, seed 0)": runs["a_nv"].eval_dir}
    keys = sorted(gt)[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.qualitative_grid(eval_dirs, keys, gt, tmp_path / "grid", title="novel_view, toy")
    (name, fig), = captured
    assert all(im.get_interpolation() == "nearest" for ax in fig.axes for im in ax.images)
    assert len([ax for ax in fig.axes if ax.images]) == 4
    assert "40x32 px each, shown at 6x" in fig._suptitle.get_text()
    assert fig.axes[1].get_title() == "flame_gaussians\n(smoke, seed 0)"
