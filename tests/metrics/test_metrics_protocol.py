"""EvalProtocol + evaluate_images: quantisation, mask modes, crops, LPIPS labelling, config."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from avatarbench.errors import ConfigError, DataError
from avatarbench.metrics import EvalProtocol, default_protocol, evaluate_images, summarize
from avatarbench.metrics import lpips_weights as lw
from avatarbench.metrics.protocol import mask_bbox_square_crop, quantize_to_8bit

torch.set_num_threads(1)
PSNR_ONLY = dict(metrics=("psnr",), quantize_8bit=False)


@pytest.fixture
def no_lpips_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(lw.ENV_BACKBONE, raising=False)
    monkeypatch.delenv(lw.ENV_TEST_ONLY_RANDOM, raising=False)
    monkeypatch.setenv("AVATARBENCH_LPIPS_WEIGHTS_DIR", str(tmp_path / "no_converted_weights"))
    monkeypatch.setenv("AVATARBENCH_LPIPS_AUTO_SETUP", "0")


def flat(value: float, h: int = 16, w: int = 16) -> torch.Tensor:
    return torch.full((h, w, 3), value, dtype=torch.float64)


def left_half_mask(h: int = 16, w: int = 16) -> torch.Tensor:
    m = torch.zeros(h, w, 1, dtype=torch.float64)
    m[:, : w // 2] = 1
    return m


def test_quantize_8bit_rounds_and_is_idempotent():
    x = torch.tensor([0.0, 0.5, 0.50196, 1.0, 1.3, -0.2, 0.998], dtype=torch.float64)
    q = quantize_to_8bit(x)
    assert torch.allclose(q * 255, torch.tensor([0, 128, 128, 255, 255, 0, 254], dtype=torch.float64))
    levels = torch.arange(256, dtype=torch.float32) / 255  # 8-bit data loaded as float32
    assert torch.equal(quantize_to_8bit(levels.double()) * 255, torch.arange(256, dtype=torch.float64))


def test_quantisation_applies_to_pred_and_gt():
    pred, gt = flat(0.5011), flat(0.5)  # both round to 128/255
    on = evaluate_images(pred, gt, None, EvalProtocol(metrics=("psnr",)))
    off = evaluate_images(pred, gt, None, EvalProtocol(metrics=("psnr",), quantize_8bit=False))
    assert math.isinf(on["psnr"])
    assert off["psnr"] == pytest.approx(-10 * math.log10(0.0011 ** 2), abs=1e-6)
    # uint8 numpy inputs are accepted and equal their float version
    u8 = evaluate_images(np.full((16, 16, 3), 100, np.uint8), np.full((16, 16, 3), 110, np.uint8), None,
                         EvalProtocol(metrics=("psnr",)))
    assert u8["psnr"] == pytest.approx(-10 * math.log10((10 / 255) ** 2), abs=1e-9)


@pytest.mark.parametrize(
    "mode, mse",
    [
        ("none", 0.04),        # every pixel off by 0.2
        ("multiply", 0.02),    # masked-out half counts as zero error over the full image
        ("composite", 0.02),   # masked-out half becomes background in both
        ("normalized", 0.04),  # mean over mask pixels only
    ],
)
def test_mask_modes_hand_values(mode, mse):
    p = EvalProtocol(mask_mode=mode, **PSNR_ONLY)
    out = evaluate_images(flat(0.5), flat(0.3), left_half_mask(), p)
    assert out["psnr"] == pytest.approx(-10 * math.log10(mse), abs=1e-9)


def test_mask_modes_differ_when_error_outside_mask():
    pred, gt = flat(0.3), flat(0.3)
    pred[:, 8:] = 0.9  # error only outside the mask
    m = left_half_mask()
    none = evaluate_images(pred, gt, m, EvalProtocol(mask_mode="none", **PSNR_ONLY))["psnr"]
    assert none == pytest.approx(-10 * math.log10(0.36 / 2), abs=1e-9)
    for mode in ("multiply", "composite", "normalized"):
        assert math.isinf(evaluate_images(pred, gt, m, EvalProtocol(mask_mode=mode, **PSNR_ONLY))["psnr"])
    # composite really blends onto the protocol background: white vs black differs only in pixels
    # where the mask is fractional
    soft = torch.full((16, 16, 1), 0.5, dtype=torch.float64)
    w = evaluate_images(flat(0.2), flat(0.0), soft, EvalProtocol(mask_mode="composite", background=(1, 1, 1), **PSNR_ONLY))
    assert w["psnr"] == pytest.approx(-10 * math.log10(0.1 ** 2), abs=1e-9)  # 0.6 vs 0.5


def test_mask_threshold_binarises():
    m = torch.full((16, 16, 1), 0.4, dtype=torch.float64)
    m[:, :8] = 0.9
    p = EvalProtocol(mask_mode="normalized", mask_threshold=0.5, **PSNR_ONLY)
    pred, gt = flat(0.5), flat(0.3)
    pred[:, 8:] = 1.0  # large error where the binarised mask is 0
    assert evaluate_images(pred, gt, m, p)["psnr"] == pytest.approx(-10 * math.log10(0.04), abs=1e-9)


def test_mask_bbox_square_crop_hand_case():
    img = torch.arange(20 * 30 * 3, dtype=torch.float64).reshape(20, 30, 3) / (20 * 30 * 3)
    m = torch.zeros(20, 30, 1)
    m[5:10, 10:20] = 1  # rows 5..9, cols 10..19
    c = mask_bbox_square_crop(img, m, pad=2, size=None, background=(1, 1, 1))
    # box rows 3..11, cols 8..21 -> square side 14 centred on rows 7 -> rows 0..13
    assert c.shape == (14, 14, 3)
    assert torch.equal(c, img[0:14, 8:22])
    # near the border: the outside is filled with the background colour
    m2 = torch.zeros(20, 30, 1)
    m2[0:3, 0:3] = 1
    c2 = mask_bbox_square_crop(img, m2, pad=2, size=None, background=(0.25, 0.5, 0.75))
    assert c2.shape == (7, 7, 3)  # rows -2..4, cols -2..4
    assert torch.equal(c2[2:, 2:], img[0:5, 0:5])
    assert torch.equal(c2[0, 0], torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    # resizing
    assert mask_bbox_square_crop(img, m, pad=2, size=64, background=(1, 1, 1)).shape == (64, 64, 3)


def test_evaluate_images_records_lpips_null_without_weights(no_lpips_weights):
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(48, 48, 3, generator=g)
    out = evaluate_images(gt * 0.9, gt, None, default_protocol("novel_view", "head"))
    assert set(out) == {"psnr", "ssim", "lpips", "lpips_alex", "lpips_vgg"}
    assert out["lpips"] is None and out["lpips_alex"] is None and out["lpips_vgg"] is None
    assert math.isfinite(out["psnr"]) and 0 < out["ssim"] < 1
    st = default_protocol("novel_view").lpips_status()
    assert not st["vgg"]["available"] and "vgg16-397923af.pth" in st["vgg"]["reason"]


def test_evaluate_images_test_only_backbone_labelled(no_lpips_weights, monkeypatch):
    monkeypatch.setenv(lw.ENV_TEST_ONLY_RANDOM, "1")
    g = torch.Generator().manual_seed(1)
    gt = torch.rand(64, 64, 3, generator=g)
    m = torch.zeros(64, 64, 1)
    m[20:40, 10:50] = 1
    p = EvalProtocol(name="t", crop="mask_bbox", crop_size=64, lpips_nets=("alex",), lpips_primary="alex")
    out = evaluate_images((gt + 0.1).clamp(0, 1), gt, m, p)
    assert out["lpips"] is None and out["lpips_alex"] is None
    v = out[lw.TEST_ONLY_LABEL]
    assert v is not None and math.isfinite(v) and v > 0 and out[f"{lw.TEST_ONLY_LABEL}_alex"] == v
    legacy = evaluate_images((gt + 0.1).clamp(0, 1), gt, m,
                             EvalProtocol(lpips_nets=("alex",), lpips_primary="alex",
                                          lpips_input_range="zero_one_legacy", metrics=("lpips",)))
    assert set(legacy) == {"lpips_legacy01", "lpips_alex_legacy01", f"{lw.TEST_ONLY_LABEL}_legacy01",
                           f"{lw.TEST_ONLY_LABEL}_alex_legacy01"}


def test_evaluate_images_input_errors():
    with pytest.raises(DataError):
        evaluate_images(flat(0.5), flat(0.5), None, EvalProtocol(mask_mode="multiply"))
    with pytest.raises(DataError):
        evaluate_images(flat(0.5), flat(0.5, 16, 17), None, EvalProtocol(**PSNR_ONLY))
    with pytest.raises(DataError):
        evaluate_images(flat(0.5)[..., :2], flat(0.5)[..., :2], None, EvalProtocol(**PSNR_ONLY))
    bad = flat(0.5)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(DataError):
        evaluate_images(bad, flat(0.5), None, EvalProtocol(**PSNR_ONLY))


def test_protocol_config_roundtrip_and_validation():
    from omegaconf import OmegaConf

    node = OmegaConf.create({"name": "x", "split": "self_reenact", "mask_mode": "normalized",
                             "background": [0, 0, 0], "lpips_nets": ["vgg"]})
    p = EvalProtocol.from_config(node)
    assert p.mask_mode == "normalized" and p.background == (0.0, 0.0, 0.0) and p.lpips_nets == ("vgg",)
    d = p.to_dict()
    json.dumps(d)  # JSON-ready
    assert d["protocol_version"] == 1 and d["definitions"]["ssim"]["sigma"] == 1.5
    assert EvalProtocol.from_config({k: v for k, v in d.items() if k not in ("protocol_version", "definitions")}) == p
    with pytest.raises(ConfigError, match="unknown"):
        EvalProtocol.from_config({"mask_mod": "none"})
    with pytest.raises(ConfigError, match="mask_mode"):
        EvalProtocol(mask_mode="alpha")
    with pytest.raises(ConfigError, match="lpips_nets"):
        EvalProtocol(lpips_nets=("squeeze",))
    with pytest.raises(ConfigError):
        default_protocol("train")


def test_shipped_protocol_configs_load():
    from omegaconf import OmegaConf

    from avatarbench.paths import configs_dir

    files = sorted((configs_dir() / "protocols").glob("*.yaml"))
    assert files
    for f in files:
        p = EvalProtocol.from_config(OmegaConf.load(f).protocol)
        assert p.name and p.split in ("novel_view", "self_reenact", "cross_reenact")


def test_empty_lpips_nets_means_no_lpips():
    p = EvalProtocol(lpips_nets=(), quantize_8bit=False, has_gt=False, max_frames=3)
    out = evaluate_images(flat(0.5), flat(0.4), None, p)
    assert set(out) == {"psnr", "ssim"} == set(p.metric_keys())
    with pytest.raises(ConfigError, match="max_frames"):
        EvalProtocol(max_frames=0)


def test_default_protocols():
    h = default_protocol("self_reenact", "head")
    b = default_protocol("novel_view", "body")
    assert h.name == "head_self_reenact" and h.crop == "none" and h.mask_mode == "none" and h.quantize_8bit
    assert b.name == "body_novel_view" and b.crop == "mask_bbox" and b.crop_pad == 50 and b.crop_size == 512
    assert h.background == b.background == (1.0, 1.0, 1.0)
    assert h.metric_keys() == ["psnr", "ssim", "lpips", "lpips_alex", "lpips_vgg"]


def test_summarize_means_and_nulls():
    s = summarize([{"psnr": 20.0, "lpips": None, "ssim": 0.5}, {"psnr": 30.0, "lpips": 0.1, "ssim": 0.7}])
    assert s == {"psnr": 25.0, "lpips": None, "ssim": pytest.approx(0.6)}


@pytest.mark.gpu
def test_evaluate_images_cuda_matches_cpu(monkeypatch):
    monkeypatch.setenv(lw.ENV_TEST_ONLY_RANDOM, "1")
    g = torch.Generator().manual_seed(2)
    gt = torch.rand(64, 64, 3, generator=g)
    pred = (gt + 0.05).clamp(0, 1)
    p = EvalProtocol(lpips_nets=("alex",), lpips_primary="alex")
    a = evaluate_images(pred, gt, None, p)
    b = evaluate_images(pred.cuda(), gt.cuda(), None, p)
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] is None and b[k] is None) or abs(a[k] - b[k]) < 1e-4, k
