"""Regression: each method's smoke run (seed 0, CPU) must not drop below its committed reference
(``results/regression/<method>.json``) by more than the measured run-to-run noise (>= 0.2 dB PSNR).

One training per method serves all splits (the run folder is reused), so the cost is one smoke
run per method.
"""

from __future__ import annotations

import pytest

from avatarbench.engine.config import RunRequest
from avatarbench.engine.run import execute
from avatarbench.results.regression import compare, load_reference, regression_dir

METHODS = sorted(p.stem for p in regression_dir().glob("*.json"))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("regression_runs")


@pytest.mark.parametrize("method", METHODS)
def test_smoke_run_holds_its_reference(method, store):
    ref = load_reference(method)
    failures, lines = [], []
    for split in ref["splits"]:
        out = execute(RunRequest(method, split, ref["preset"], sets=("engine.seed=0", f"output.root={store}"),
                                 subject=ref["subject"]), progress=False)
        failures += compare(ref, split, out.results["metrics"])
        lines.append(f"{split}: {out.results['metrics']}")
    assert not failures, "; ".join(failures) + " | got " + " | ".join(lines)


def test_references_are_well_formed():
    for m in METHODS:
        ref = load_reference(m)
        assert ref["splits"], m
        for split, metrics in ref["splits"].items():
            assert metrics["psnr"]["tolerance"] >= 0.2


def test_compare_guards_lpips_against_a_rise():
    from avatarbench.results.regression import make_reference

    runs = [{"seed": s, "split": "novel_view", "metrics": {"psnr": 30.0 + d, "ssim": 0.9, "lpips_vgg": 0.2 + d / 100,
                                                           "lpips_alex": None}}
            for s, d in ((0, 0.0), (1, 0.2))]
    ref = make_reference("m", runs, preset="smoke", subject="s", sets=[])
    e = ref["splits"]["novel_view"]["lpips_vgg"]
    # mean 0.201, std 0.0014142 -> tolerance max(0.005, 3 std) = 0.005; no alex values -> no alex entry
    assert e["mean"] == pytest.approx(0.201) and e["tolerance"] == pytest.approx(0.005)
    assert "lpips_alex" not in ref["splits"]["novel_view"]
    ok = {"psnr": 30.1, "ssim": 0.9, "lpips_vgg": 0.2055}
    assert compare(ref, "novel_view", ok) == []
    assert compare(ref, "novel_view", dict(ok, lpips_vgg=0.1)) == []  # lower LPIPS is an improvement
    bad = compare(ref, "novel_view", dict(ok, lpips_vgg=0.2065))
    assert len(bad) == 1 and bad[0].startswith("novel_view lpips_vgg: 0.2065 > 0.2060")
    assert compare(ref, "novel_view", dict(ok, lpips_vgg=None)) == ["novel_view lpips_vgg: missing"]
