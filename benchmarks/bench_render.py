"""Renderer microbenchmark (CLI): forward / backward seconds over Gaussian count x resolution.

    python benchmarks/bench_render.py --counts 5000,20000,50000 --resolutions 128,256,512 \
        --threads 2 --repeats 3 [--backend auto|torch|gsplat] [--device cpu|cuda] [--json out.json]

The scene and timing live in :mod:`avatarbench.render.benchmark` (``run``, ``make_head_scene``,
``time_render``), which ``avatarbench bench render`` also calls.
"""

from __future__ import annotations

import argparse
import json

import torch

from avatarbench.render.benchmark import HEADER, format_row, make_head_scene, run, time_render

__all__ = ["run", "make_head_scene", "time_render", "main"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="5000,20000,50000")
    ap.add_argument("--resolutions", default="128,256,512")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the rows to this JSON file")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(HEADER, flush=True)
    rows = run([int(c) for c in a.counts.split(",")], [int(r) for r in a.resolutions.split(",")],
               device=a.device, backend=a.backend, repeats=a.repeats, echo=lambda line: print(line, flush=True))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
