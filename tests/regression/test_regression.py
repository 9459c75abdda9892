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
