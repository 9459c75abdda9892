"""`bench methods` measures what `avatarbench run` runs: the preset's thread count, one fresh
process per method (so peak memory is the method's own)."""

from __future__ import annotations

import json

import torch


def test_bench_methods_uses_the_presets_threads_in_its_own_process(tmp_path, monkeypatch):
    from avatarbench.results.bench import run_method_bench

    monkeypatch.chdir(tmp_path)
    parent_threads = torch.get_num_threads()
    torch.set_num_threads(2)  # what a 2-core machine defaults to; smoke runs use 1
    try:
        lines = []
        path = run_method_bench(["flame_gaussians"], preset="smoke", train_steps=2, render_repeats=1, echo=lines.append)
    finally:
        torch.set_num_threads(parent_threads)
    report = json.loads((tmp_path / path).read_text())["methods"]
    assert len(report["rows"]) == 1, lines  # a failed method is reported in one line and left out
    (row,) = report["rows"]
    assert report["isolated_processes"] is True
    assert row["torch_threads"] == 1  # smoke's engine.num_threads, not this process's 2
    assert path.parts[:2] == ("runs", "bench") and path.name.endswith("-1threads.json")
    assert row["peak_rss_mb"] > 0 and "(1 threads)" in lines[0]
