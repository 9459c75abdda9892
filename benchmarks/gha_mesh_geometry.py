"""Score Gaussian Head Avatar's stage-1 mesh against the synthetic subject's GT mesh.

Usage: python benchmarks/gha_mesh_geometry.py RUN_DIR [--split self_reenact] [--out results/geometry/...json]

Loads the run's final checkpoint, evaluates the stage-1 (DMTet) mesh for every timestep of the
split under its driving parameters, and reports point-to-mesh / Chamfer distances to the GT mesh
(avatarbench.metrics.geometry), next to the same numbers for the stage-2 Gaussian means.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from avatarbench.engine.reproduce import _load_method
from avatarbench.metrics.geometry import geometry_metrics


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--split", default="self_reenact")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    cfg, subject, method, ck, _ = _load_method(Path(a.run_dir))
    faces = torch.as_tensor(np.asarray(subject.gt_mesh_faces), dtype=torch.long)
    rows = {"stage1_mesh": [], "stage2_gaussians": []}
    seen = set()
    with torch.no_grad():
        for f in subject.frames(a.split):
            if f.timestep in seen:
                continue
            seen.add(f.timestep)
            gt = torch.as_tensor(subject.gt_mesh(f.timestep), dtype=torch.float32)
            mesh_pts = method._mesh_frame(f).world.float().cpu()
            gauss_pts = method.geometry(f).float().cpu()
            rows["stage1_mesh"].append(geometry_metrics(mesh_pts, gt, faces))
            rows["stage2_gaussians"].append(geometry_metrics(gauss_pts, gt, faces))
    summary = {k: {m: float(np.mean([float(r[m]) for r in v])) for m in ("p2m_mean_mm", "gt_to_pred_mean_mm",
                                                                       "chamfer_mm")} for k, v in rows.items()}
    out = {"run": Path(a.run_dir).name, "checkpoint": ck.name, "split": a.split, "timesteps": len(seen),
           "subject": subject.name, "preset": cfg.run.preset, "metrics": summary,
           "note": "synthetic subject; GT = the stand-in FLAME mesh posed with the tracked parameters"}
    print(json.dumps(out, indent=2))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
