"""Render a split and score it with the one metric harness.

Writes into ``<run>/eval/<split>/``::

    renders/<camera>/<frame key>.png     every rendered frame (8-bit)
    videos/cam_XX.mp4                    per camera, for reenactment splits
    metrics_per_image.csv                one row per frame (NerfBaselines-style per-image results)
    metrics_geometry.csv                 per timestep, when the subject has GT meshes
    results.json                         means, protocol, LPIPS status, timings, hashes
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from avatarbench.data.images import save_png
from avatarbench.data.subject import Frame, Subject
from avatarbench.engine.method import AvatarMethod


def progress_bar(items, desc: str, enabled: bool = True, **kw):
    """``items`` wrapped in a tqdm bar (stderr; left on screen) when ``enabled``, else ``items``."""
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, dynamic_ncols=True, mininterval=1.0, **kw)


def _png_path(out_dir: Path, frame: Frame) -> Path:
    return out_dir / "renders" / f"cam_{frame.camera.id:02d}" / (frame.key.replace("/", "__") + ".png")


@torch.no_grad()
def render_frames(method: AvatarMethod, frames: list[Frame], out_dir: Path, *, progress: bool = True
                  ) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Render every frame to PNG. Returns the 8-bit-exact renders (H, W, 3) by key and seconds per frame."""
    renders: dict[str, torch.Tensor] = {}
    times: list[float] = []
    it = frames
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(frames, desc="render", leave=False, dynamic_ncols=True, mininterval=1.0)
    for f in it:
        t0 = time.perf_counter()
        out = method.render(f)
        rgb = out.rgb.detach().float().clamp(0, 1).cpu()
        times.append(time.perf_counter() - t0)
        path = _png_path(out_dir, f)
        save_png(path, rgb)
        # keep exactly what the PNG holds, so in-run and offline scores agree to the last bit
        renders[f.key] = torch.floor(rgb * 255.0 + 0.5) / 255.0
    return renders, times


def video_fps(n_frames: int, seconds: float = 4.0, lo: int = 2, hi: int = 25) -> int:
    """A watchable frame rate: a sequence plays for about ``seconds`` (``lo``..``hi`` fps), so a
    10-frame smoke sequence lasts 5 s instead of 0.4 s at 25 fps, and a long one plays at 25."""
    return int(min(hi, max(lo, round(n_frames / seconds))))


def write_videos(frames: list[Frame], out_dir: Path, fps: int | None = None) -> list[Path]:
    """One MP4 per camera from the saved PNGs, in timestep order: ground truth | render side by
    side where the frame has ground truth, the render alone otherwise (cross-reenactment).

    ``fps``: None = :func:`video_fps` of the sequence length."""
    import imageio.v3 as iio

    by_cam: dict[int, list[Frame]] = defaultdict(list)
    for f in frames:
        by_cam[f.camera.id].append(f)
    paths = []
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    for cam, fs in sorted(by_cam.items()):
        fs = sorted(fs, key=lambda f: f.timestep)
        imgs = [_with_ground_truth(f, iio.imread(_png_path(out_dir, f))[..., :3]) for f in fs]
        # H.264 wants even sizes: pad by edge replication
        h, w = imgs[0].shape[:2]
        ph, pw = h % 2, w % 2
        if ph or pw:
            imgs = [np.pad(im, ((0, ph), (0, pw), (0, 0)), mode="edge") for im in imgs]
        path = out_dir / "videos" / f"cam_{cam:02d}.mp4"
        try:
            iio.imwrite(path, np.stack(imgs), fps=fps or video_fps(len(imgs)), codec="libx264", macro_block_size=1)
        except Exception as e:  # no ffmpeg: keep going, the PNGs are the record
            import warnings

            warnings.warn(f"could not write {path}: {e}")
            continue
        paths.append(path)
    return paths


def _with_ground_truth(frame: Frame, render: np.ndarray, gap: int = 2) -> np.ndarray:
    """(H, W, 3) uint8 render -> (H, 2W + gap, 3) GT | render when the frame has ground truth of
    the same size, else the render unchanged."""
    if not frame.has_gt:
        return render
    try:
        gt = frame.image()
    except Exception:  # noqa: BLE001 - a missing GT image never stops the video
        return render
    gt = np.asarray(gt.detach().cpu().numpy() if hasattr(gt, "detach") else gt)[..., :3]
    if gt.shape[:2] != render.shape[:2]:
        return render
    gt8 = np.clip(np.floor(gt * 255.0 + 0.5), 0, 255).astype(np.uint8) if gt.dtype != np.uint8 else gt
    sep = np.full((render.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([gt8, sep, render], axis=1)


def score_frames(frames: list[Frame], renders: dict[str, torch.Tensor], protocol_cfg, out_dir: Path, *,
                 progress: bool = False) -> pd.DataFrame:
    """Per-image metrics of saved renders against ground truth (reads renders back from PNG when
    ``renders`` is empty, which is what ``avatarbench eval`` does)."""
    from avatarbench.data.images import read_image_array
    from avatarbench.metrics.protocol import EvalProtocol, evaluate_images

    protocol = EvalProtocol.from_config(protocol_cfg)
    rows = []
    for f in progress_bar([f for f in frames if f.has_gt], "score images", progress, unit="img"):
        pred = renders.get(f.key)
        if pred is None:
            pred = torch.from_numpy(read_image_array(_png_path(out_dir, f))[..., :3])
        gt = f.image()
        m = evaluate_images(pred, gt, f.mask(), protocol)
        rows.append({"key": f.key, "sequence": f.sequence, "timestep": f.timestep, "camera": f.camera.id, **m})
    return pd.DataFrame(rows)


def score_geometry(method: AvatarMethod, subject: Subject, frames: list[Frame], *,
                   progress: bool = False) -> pd.DataFrame | None:
    """Point-to-mesh / Chamfer distance of the avatar's geometry to the GT mesh, per timestep."""
    faces = subject.gt_mesh_faces
    if faces is None:
        return None
    from avatarbench.metrics.geometry import geometry_metrics

    rows, seen, todo = [], set(), []
    for f in frames:
        if f.timestep in seen or f.driver is not None:
            continue
        seen.add(f.timestep)
        todo.append(f)
    for f in progress_bar(todo, "score geometry", progress, unit="mesh"):
        gt = subject.gt_mesh(f.timestep)
        pts = method.geometry(f)
        if gt is None or pts is None:
            continue
        m = geometry_metrics(pts.detach().float().cpu(), torch.as_tensor(gt, dtype=torch.float32),
                             torch.as_tensor(np.asarray(faces), dtype=torch.long))
        rows.append({"timestep": f.timestep, "sequence": f.sequence, **{k: float(v) for k, v in m.items()}})
    return pd.DataFrame(rows) if rows else None


def sha256_of_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.read_bytes())
    return h.hexdigest()


def summarize(per_image: pd.DataFrame) -> dict:
    """Mean of every numeric metric column (NaN/None-aware: a column that is all null stays null)."""
    out = {}
    for col in per_image.columns:
        if col in ("key", "sequence", "timestep", "camera"):
            continue
        vals = pd.to_numeric(per_image[col], errors="coerce")
        out[col] = None if vals.isna().all() else float(vals.mean())
    return out
