"""Generation-time cost of each phenomenon of the synthetic world (issue 12).

Generates the head preset (both identities, in-process, 1 torch thread) and one body subject once
per world variant (clean, each phenomenon alone, full) into a temporary folder and reports the
process CPU time (robust to a shared machine; one torch thread, in-process) and its ratio to
``clean`` measured in the same run. Writes ``results/bench/synth_world_cost.csv``.

    python benchmarks/synth_world_cost.py [--head-preset tiny] [--body-size 64] [--repeats 1]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--head-preset", default="tiny")
    ap.add_argument("--body-size", type=int, default=64)
    ap.add_argument("--body-frames", type=int, default=8)
    ap.add_argument("--out", default="results/bench/synth_world_cost.csv")
    args = ap.parse_args()
    torch.set_num_threads(1)

    import avatarbench.data.synth.body as body
    from avatarbench.bodymodels.smplx_synthetic import ensure_synthetic_smplx
    from avatarbench.data.synth.head import generate_synthetic_heads
    from avatarbench.data.synth.world import World, world_variants

    ensure_synthetic_smplx()  # build the stand-in outside the timings
    bpre = body.BodyPreset(width=args.body_size, height=args.body_size, n_train=args.body_frames,
                           n_novel=max(2, args.body_frames // 4), supersample=2)
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="synth-cost-"))
    try:
        for kind in ("head", "body"):
            base = None
            for tag in world_variants(kind):
                d = tmp / f"{kind}_{tag}"
                d.mkdir()
                t0, c0 = time.perf_counter(), time.process_time()
                with torch.no_grad():
                    if kind == "head":
                        generate_synthetic_heads(d, args.head_preset, 0, workers=1, world=tag)
                    else:
                        body.generate_body_subject(d, "synth_body_a", bpre, 0, World.parse("body", tag))
                wall, sec = time.perf_counter() - t0, time.process_time() - c0
                base = sec if tag == "clean" else base
                rows.append({"kind": kind, "world": tag, "cpu_seconds": round(sec, 2), "wall_seconds": round(wall, 2),
                             "cpu_ratio_to_clean": round(sec / base, 3),
                             "size": args.head_preset if kind == "head" else f"{args.body_size}px x {bpre.n_train + bpre.n_novel} frames"})
                print(rows[-1], flush=True)
                shutil.rmtree(d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
