"""Reproducibility checks of a finished run, modelled on NerfBaselines' ``test-method``:

1. loading the final checkpoint into a fresh method and saving it again gives identical bytes;
2. re-rendering the evaluated split from the checkpoint gives PNG-identical images;
3. offline re-scoring of the saved renders matches the in-run per-image metrics to 1e-6.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf


def _load_method(run_dir: Path):
    from avatarbench.engine.checkpoint import load_latest_valid
    from avatarbench.engine.registry import load_method_class
    from avatarbench.engine.run import load_run_subject, train_frames_for
    from avatarbench.engine.trainer import seed_everything, select_device

    cfg = OmegaConf.load(Path(run_dir) / "config.yaml")
    found = load_latest_valid(run_dir, echo=lambda m: print(m, file=sys.stderr))
    if found is None:
        from avatarbench.errors import DataError

        raise DataError(Path(run_dir) / "checkpoints", "no checkpoint in the run folder")
    seed_everything(int(cfg.engine.seed))
    subject = load_run_subject(cfg)
    method = load_method_class(cfg.run.method)(cfg.method, subject, select_device(cfg.engine.device))
    method.setup(train_frames_for(subject, cfg))
    ck, payload = found
    method.load_state_dict(payload["method"])
    return cfg, subject, method, ck, payload


def _bytes(obj) -> bytes:
    from avatarbench.engine.checkpoint import checkpoint_bytes

    return checkpoint_bytes(obj)


def check_reproducibility(run_dir: Path, split: str, *, progress: bool = False, echo=None) -> dict:
    """Run the three checks; returns a dict of booleans and details (never raises on mismatch).

    ``progress``: bars for the re-render and re-scoring; ``echo``: called with a line per step."""
    say = echo or (lambda *a, **k: None)
    import imageio.v3 as iio
    import numpy as np

    from avatarbench.engine.evaluate import _png_path, render_frames
    from avatarbench.engine.offline_eval import offline_eval
    from avatarbench.engine.run import split_frames

    run_dir = Path(run_dir)
    if not (run_dir / "run.json").is_file():
        from avatarbench.errors import DataError

        raise DataError(run_dir, "not an avatarbench run folder (no run.json)", "a folder made by `avatarbench run`")
    if not (run_dir / "eval" / split / "results.json").is_file():
        from avatarbench.errors import DataError

        done = sorted(p.parent.name for p in (run_dir / "eval").glob("*/results.json"))
        raise DataError(run_dir / "eval" / split, f"split {split!r} has not been evaluated in this run folder",
                        f"one of {', '.join(done)}" if done else f"`avatarbench run ... --split {split}` first")
    say("check 1/3: loading the final checkpoint and saving it again")
    cfg, subject, method, ck, payload = _load_method(run_dir)
    resaved = dict(payload)
    resaved["method"] = method.state_dict()
    checkpoint_identical = _bytes(resaved) == ck.read_bytes()

    eval_dir = run_dir / "eval" / split
    saved = json.loads((eval_dir / "results.json").read_text())
    cfg.protocol = OmegaConf.create(saved["protocol"])
    cfg.run.split = split
    frames = split_frames(subject, cfg)
    tmp = run_dir / "repro_tmp"
    say(f"check 2/3: re-rendering {len(frames)} frames of {split}")
    render_frames(method, frames, tmp, progress=progress)
    mismatched = []
    for f in frames:
        a = iio.imread(_png_path(eval_dir, f))
        b = iio.imread(_png_path(tmp, f))
        if not np.array_equal(a, b):
            mismatched.append(f.key)
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    say("check 3/3: re-scoring the saved renders offline")
    off = offline_eval(run_dir, split, progress=progress) if saved.get("metrics") else {"max_abs_diff_vs_in_run": {}}
    diffs = {k: v for k, v in (off.get("max_abs_diff_vs_in_run") or {}).items() if v is not None}
    return {
        "checkpoint_resave_identical": checkpoint_identical,
        "rerender_identical": not mismatched,
        "rerender_frames": len(frames),
        "rerender_mismatched_frames": mismatched[:10],
        "offline_eval_max_abs_diff": diffs,
        "offline_eval_within_1e-6": all(v <= 1e-6 for v in diffs.values()),
    }


def format_check(res: dict) -> str:
    """One human line: pass/fail per check and the largest offline-scoring difference."""
    from avatarbench.engine.offline_eval import largest_difference

    def verdict(ok):
        return "PASS" if ok else "FAIL"

    key, value = largest_difference(res.get("offline_eval_max_abs_diff"))
    rerender = verdict(res["rerender_identical"])
    if not res["rerender_identical"]:
        rerender += f" ({len(res.get('rerender_mismatched_frames') or [])}+ frames differ)"
    off = verdict(res["offline_eval_within_1e-6"])
    off += f" (largest difference {value:.1e} in {key})" if key is not None else " (no metrics to compare)"
    ok = res["checkpoint_resave_identical"] and res["rerender_identical"] and res["offline_eval_within_1e-6"]
    return (f"{'all checks passed' if ok else 'CHECK FAILED'}: checkpoint re-save "
            f"{verdict(res['checkpoint_resave_identical'])}, re-render {rerender}, offline re-score {off}")
