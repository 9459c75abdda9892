"""PSNR of a run's saved renders in the upper and lower part of the image (a diagnostic for the studies).

    python benchmarks/region_psnr.py RUN_DIR [RUN_DIR ...] [--split self_reenact] [--cut 0.62]
    python benchmarks/region_psnr.py --deltas gaussian_avatars --ablations no_density_control \
        --preset bench --seeds 0,1 --splits novel_view,self_reenact --out deltas.json

Heads on the synthetic rig: the chin lies near 62 % of the image height in every camera, so the
upper part is the face and hair (what FLAME-bound Gaussians can cover) and the lower part the neck,
collar and shoulders (the ``shoulders`` phenomenon, beyond FLAME). Compares the saved 8-bit renders
(``eval/<split>/renders``) with the ground-truth images resized to the render size (area filter, as
the protocol). Prints mean PSNR over images per region. Not a protocol metric: a way to see where a
difference between two runs comes from (docs/studies.md).
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import numpy as np


@functools.lru_cache(maxsize=None)
def _gt_paths(subject_name: str, split: str) -> dict[tuple[int, str, int], Path]:
    """(camera id, sequence, timestep) -> ground-truth image path of a subject's split (loaded once)."""
    from avatarbench.data.registry import load_subject

    return {(f.camera.id, f.sequence, f.timestep): f.image_path for f in load_subject(subject_name).frames(split)}


@functools.lru_cache(maxsize=1024)
def _gt_image(path: Path, H: int, W: int) -> np.ndarray:
    """(H, W, 3) float64 ground truth resized to the render size (area filter) and rounded to 8 bits,
    as the protocol compares them; read once however many runs are compared against it."""
    import imageio.v3 as iio
    import torch
    import torch.nn.functional as F

    gt = iio.imread(path)[..., :3].astype(np.float32) / 255.0
    gt = F.interpolate(torch.tensor(gt).permute(2, 0, 1)[None], size=(H, W), mode="area")[0].permute(1, 2, 0)
    return np.round(gt.numpy().astype(np.float64) * 255.0) / 255.0


def region_psnr(run_dir: Path, split: str = "self_reenact", cut: float = 0.62) -> dict:
    import imageio.v3 as iio
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run_dir / "config.yaml")
    gt_of = _gt_paths(str(cfg.data.subject), split)
    out = {"upper": [], "lower": [], "all": []}
    for png in sorted((run_dir / "eval" / split / "renders").glob("cam_*/*.png")):
        seq, rest = png.stem.split("__")
        t, c = rest.split("_c")
        path = gt_of.get((int(c), seq, int(t[1:])))
        if path is None:
            continue
        pred = iio.imread(png)[..., :3].astype(np.float64) / 255.0
        H, W = pred.shape[:2]
        e = ((pred - _gt_image(path, H, W)) ** 2).mean(-1)
        k = int(round(cut * H))
        for name, part in (("upper", e[:k]), ("lower", e[k:]), ("all", e)):
            out[name].append(-10.0 * np.log10(max(part.mean(), 1e-12)))
    return {k: float(np.mean(v)) if v else float("nan") for k, v in out.items()} | {"images": len(out["all"])}


def ablation_deltas(root: Path, subject: str, method: str, ablations: list[str], preset: str, seeds: list[int],
                    splits: list[str], cut: float = 0.62) -> list[dict]:
    """Per (ablation, split): mean over seeds of the paired region-PSNR difference ablated - full
    (dB) and its seed noise (std, ddof 1), for the upper part, the lower part and the whole image."""
    from avatarbench.results.store import run_folder

    rows = []
    for split in splits:
        full = {s: region_psnr(run_folder(root, subject, method, None, preset, s), split, cut) for s in seeds}
        for ab in ablations:
            abl = {s: region_psnr(run_folder(root, subject, method, ab, preset, s), split, cut) for s in seeds}
            row = {"method": method, "ablation": ab, "split": split}
            for part in ("upper", "lower", "all"):
                d = np.array([abl[s][part] - full[s][part] for s in seeds])
                row[f"d_{part}"] = round(float(d.mean()), 2)
                row[f"noise_{part}"] = round(float(d.std(ddof=1)), 2) if len(d) > 1 else None
            rows.append(row)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--split", default="self_reenact")
    ap.add_argument("--cut", type=float, default=0.62)
    ap.add_argument("--deltas", metavar="METHOD", help="paired ablated - full deltas of METHOD's study runs")
    ap.add_argument("--ablations", default="", help="--deltas: comma list")
    ap.add_argument("--root", type=Path, default=Path("runs"))
    ap.add_argument("--subject", default="synth_head_a_full")
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--splits", default="self_reenact")
    ap.add_argument("--out", type=Path, help="--deltas: write the rows here (JSON)")
    a = ap.parse_args(argv)
    for r in a.runs:
        print(json.dumps({"run": str(r), **region_psnr(r, a.split, a.cut)}))
    if a.deltas:
        seeds = [int(s) for s in a.seeds.split(",")]
        rows = ablation_deltas(a.root, a.subject, a.deltas, [x for x in a.ablations.split(",") if x], a.preset,
                               seeds, a.splits.split(","), a.cut)
        doc = {"what": f"PSNR (dB) of ablated - full per image region, {a.preset}, {a.subject}, seeds "
                       f"{a.seeds}; upper = rows above {a.cut:.0%} of the image height (face, hair), lower = below "
                       "(neck, collar, shoulders). benchmarks/region_psnr.py --deltas", "rows": rows}
        text = json.dumps(doc, indent=1) + "\n"
        if a.out:
            a.out.write_text(text)
        print(text)


if __name__ == "__main__":
    main()
