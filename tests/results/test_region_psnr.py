"""benchmarks/region_psnr.py: the region split of a saved render (hand-computed PSNRs) and the paired
ablated - full deltas over seeds (hand-computed mean and ddof-1 std)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rp():
    spec = importlib.util.spec_from_file_location("region_psnr", REPO / "benchmarks" / "region_psnr.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paired_deltas_over_seeds(rp, monkeypatch, tmp_path):
    # region PSNRs per run folder (store layout <root>/<subject>/<method>[+<ablation>]/<preset>[-seed<k>])
    table = {
        ("gaussian_avatars", "bench"): (24.0, 23.0, 23.5),
        ("gaussian_avatars", "bench-seed1"): (25.0, 24.0, 24.5),
        ("gaussian_avatars+no_density_control", "bench"): (23.0, 13.0, 16.0),
        ("gaussian_avatars+no_density_control", "bench-seed1"): (24.5, 13.0, 17.0),
    }
    seen = []

    def fake(run_dir, split, cut):
        seen.append((Path(run_dir), split))
        up, lo, al = table[(Path(run_dir).parent.name, Path(run_dir).name)]
        return {"upper": up, "lower": lo, "all": al, "images": 4}

    monkeypatch.setattr(rp, "region_psnr", fake)
    rows = rp.ablation_deltas(tmp_path, "synth_head_a_full", "gaussian_avatars", ["no_density_control"], "bench",
                              [0, 1], ["novel_view"])
    assert len(rows) == 1
    r = rows[0]
    # upper: -1.0 and -0.5 -> mean -0.75, std(ddof 1) = 0.5 / sqrt(2)
    assert r["d_upper"] == -0.75 and r["noise_upper"] == round(0.5 / math.sqrt(2), 2)
    # lower: -10 and -11 -> -10.5 +- 0.71; all: -7.5 both -> 0 noise
    assert r["d_lower"] == -10.5 and r["noise_lower"] == 0.71
    assert r["d_all"] == -7.5 and r["noise_all"] == 0.0
    assert {p.relative_to(tmp_path).as_posix() for p, _ in seen} == {
        "synth_head_a_full/gaussian_avatars/bench", "synth_head_a_full/gaussian_avatars/bench-seed1",
        "synth_head_a_full/gaussian_avatars+no_density_control/bench",
        "synth_head_a_full/gaussian_avatars+no_density_control/bench-seed1"}


def test_region_split_of_one_render(rp, monkeypatch, tmp_path):
    """A render off by 0.1 above the cut and by 0.2 below: PSNR 20 dB and 13.98 dB, all-image from the
    pooled MSE."""
    import imageio.v3 as iio
    from omegaconf import OmegaConf

    H, W = 10, 4
    gt = np.full((H, W, 3), 0.5)
    pred = gt.copy()
    pred[:6] += 0.1      # cut 0.6 -> rows 0-5 are "upper"
    pred[6:] -= 0.2
    gt_png = tmp_path / "gt.png"
    iio.imwrite(gt_png, np.round(gt * 255).astype(np.uint8))
    run = tmp_path / "run"
    (run / "eval" / "self_reenact" / "renders" / "cam_0").mkdir(parents=True)
    iio.imwrite(run / "eval" / "self_reenact" / "renders" / "cam_0" / "seqA__t00000_c0.png",
                np.round(pred * 255).astype(np.uint8))
    OmegaConf.save(OmegaConf.create({"data": {"subject": "fake"}}), run / "config.yaml")

    class Cam:
        id = 0

    class Frame:
        camera, sequence, timestep, image_path = Cam(), "seqA", 0, gt_png

    class Subject:
        def frames(self, split):
            return [Frame()]

    import avatarbench.data.registry as registry

    monkeypatch.setattr(registry, "load_subject", lambda name: Subject())
    out = rp.region_psnr(run, "self_reenact", cut=0.6)
    q = lambda x: np.round(x * 255) / 255  # noqa: E731  (8-bit images on both sides)
    e_up = (q(0.6) - q(0.5)) ** 2
    e_lo = (q(0.3) - q(0.5)) ** 2
    assert out["images"] == 1
    assert out["upper"] == pytest.approx(-10 * math.log10(e_up), abs=1e-6)
    assert out["lower"] == pytest.approx(-10 * math.log10(e_lo), abs=1e-6)
    assert out["all"] == pytest.approx(-10 * math.log10(0.6 * e_up + 0.4 * e_lo), abs=1e-6)
