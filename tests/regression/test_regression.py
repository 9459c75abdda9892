"""Regression: each method's smoke run (seed 0, CPU) must not drop below its committed reference
(``results/regression/<method>.json``) by more than the measured run-to-run noise (>= 0.2 dB PSNR;
LPIPS must not rise by more than its tolerance).

One training per method serves all splits (the run folder is reused), so the cost is one smoke run
per method. Smoke runs are single-threaded, so the methods train side by side in a pool of
``min(2, cores)`` processes (``AVATARBENCH_REGRESSION_WORKERS`` overrides; 1 = in this process, one
after another). The subjects are generated first, in this process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from avatarbench.results.regression import compare, load_reference, regression_dir, run_reference_splits

METHODS = sorted(p.stem for p in regression_dir().glob("*.json"))


def _workers() -> int:
    return int(os.environ.get("AVATARBENCH_REGRESSION_WORKERS", min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    """method -> {split: metrics} or the exception its run raised."""
    from avatarbench.engine.config import RunRequest, resolve_config
    from avatarbench.engine.run import load_run_subject

    store = str(tmp_path_factory.mktemp("regression_runs"))
    for m in METHODS:  # generate each subject once, here (the generators use worker processes of their own)
        ref = load_reference(m)
        split = next(iter(ref["splits"]))
        load_run_subject(resolve_config(RunRequest(m, split, ref["preset"], subject=ref["subject"])))
    # longest first, so two workers finish together
    order = sorted(METHODS, key=lambda m: -sum(load_reference(m).get("train_seconds") or [0]))
    results: dict = {}
    if _workers() <= 1:
        for m in order:
            try:
                results[m] = run_reference_splits(m, store)
            except Exception as e:  # reported by that method's test
                results[m] = e
        return results
    with ProcessPoolExecutor(max_workers=_workers(), mp_context=mp.get_context("spawn")) as ex:
        futures = {m: ex.submit(run_reference_splits, m, store) for m in order}
        for m, f in futures.items():
            try:
                results[m] = f.result()
            except Exception as e:  # reported by that method's test
                results[m] = e
    return results


@pytest.mark.parametrize("method", METHODS)
def test_smoke_run_holds_its_reference(method, outcomes):
    got = outcomes[method]
    if isinstance(got, Exception):
        raise got
    ref = load_reference(method)
    failures, lines = [], []
    for split in ref["splits"]:
        failures += compare(ref, split, got[split])
        lines.append(f"{split}: {got[split]}")
    assert not failures, "; ".join(failures) + " | got " + " | ".join(lines)


def test_references_are_well_formed():
    for m in METHODS:
        ref = load_reference(m)
        assert ref["splits"], m
        for split, metrics in ref["splits"].items():
            assert metrics["psnr"]["tolerance"] >= 0.2
