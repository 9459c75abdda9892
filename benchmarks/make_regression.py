"""Write ``results/regression/<method>.json`` from seeded smoke runs (CPU).

Usage: python benchmarks/make_regression.py METHOD [--seeds 0,1,2] [--splits novel_view,self_reenact]

Each seed trains once (the run folder is reused across splits). The reference stores every
seed's metrics, their mean and standard deviation, and the tolerance used by the regression test.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from avatarbench.engine.config import DEFAULT_SUBJECT as SUBJECT  # the full-phenomena world
from avatarbench.engine.config import RunRequest
from avatarbench.engine.registry import get_spec
from avatarbench.engine.run import execute
from avatarbench.results.regression import make_reference, regression_dir



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("method")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--splits", default="novel_view,self_reenact")
    ap.add_argument("--preset", default="smoke")
    args = ap.parse_args()
    subject = SUBJECT[get_spec(args.method).kind]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for split in args.splits.split(","):
                sets = (f"engine.seed={seed}", f"output.root={tmp}")
                out = execute(RunRequest(args.method, split, args.preset, sets=sets, subject=subject),
                              progress=False)
                runs.append({"seed": seed, "split": split, "metrics": out.results["metrics"],
                             "train_seconds": out.results["train"]["seconds"]})
                print(json.dumps(runs[-1]))
    ref = make_reference(args.method, runs, preset=args.preset, subject=subject, sets=[])
    ref["train_seconds"] = [r["train_seconds"] for r in runs]
    path = regression_dir() / f"{args.method}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ref, indent=2) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
