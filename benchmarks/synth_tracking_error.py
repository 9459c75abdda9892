"""Tracked-vs-true mesh difference of the ``tracking_noise`` phenomenon, without rendering.

For each synthetic head identity and sequence of a preset: FLAME posed with the tracker's parameters
vs with the true ones (per-vertex distance in mm; mean projected displacement in pixels over the 16
cameras at the preset's resolution). Bodies: the same for the SMPL-X stand-in at a body preset.

    python benchmarks/synth_tracking_error.py [--head-preset smoke] [--body-preset smoke]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def head(preset: str) -> dict:
    from avatarbench.bodymodels.flame import load_flame
    from avatarbench.bodymodels.flame_synthetic import ensure_synthetic_flame
    from avatarbench.data.synth.head import IDENTITIES, _build_identity, _sequence_rng, get_preset
    from avatarbench.data.synth.head_phenomena import mesh_difference, track_flame_params, track_identity
    from avatarbench.data.synth.motion import ExpressionUnits, make_sequence, relocate
    from avatarbench.data.synth.rig import CaptureRig

    p = get_preset(preset)
    model = load_flame(ensure_synthetic_flame(), teeth=True)
    units = ExpressionUnits.from_model(model)
    cams = CaptureRig(scale=p.scale, target=(0.0, 0.0, 0.0)).cameras()
    keys = ("translation", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "expr")
    out = {}
    for name, plan in p.sequences.items():
        ident = _build_identity(model, IDENTITIES[name], 0, (64, 128))
        shape_t, off_t = track_identity(ident.shape, ident.static_offset, np.random.default_rng([ident.seed, 555]))
        res = []
        for seq, T in plan:
            params, _ = relocate(make_sequence(seq, T, ident.seed, units, head_position=ident.spec.head_position).params)
            tr = track_flame_params(params, _sequence_rng(ident, seq, 777))
            with torch.no_grad():
                f = lambda q, s, o: model.forward(shape=torch.from_numpy(s)[None], static_offset=torch.from_numpy(o),  # noqa: E731
                                                  **{k: torch.from_numpy(q[k]) for k in keys}).verts
                res.append(mesh_difference(f(tr, shape_t, off_t), f(params, ident.shape, ident.static_offset), cams))
        out[name] = {k: round(float(np.mean([r[k] for r in res])) if "max" not in k else float(np.max([r[k] for r in res])), 3)
                     for k in res[0]}
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--head-preset", default="smoke")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(json.dumps({"head_" + a.head_preset: head(a.head_preset)}, indent=1))
