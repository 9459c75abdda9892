"""PSNR / SSIM / LPIPS on (B, 3, H, W): hand values, independent references, offline LPIPS."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avatarbench.errors import DataError, ModelFileError
from avatarbench.metrics import lpips, lpips_available, perceptual_loss_module, psnr, ssim
from avatarbench.metrics import lpips_weights as lw

torch.set_num_threads(1)


@pytest.fixture
def no_lpips_weights(tmp_path, monkeypatch):
    """A machine without any LPIPS backbone: empty TORCH_HOME, no env override, no test switch."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(lw.ENV_BACKBONE, raising=False)
    monkeypatch.delenv(lw.ENV_TEST_ONLY_RANDOM, raising=False)
    monkeypatch.setenv("AVATARBENCH_LPIPS_WEIGHTS_DIR", str(tmp_path / "no_converted_weights"))
    monkeypatch.setenv("AVATARBENCH_LPIPS_AUTO_SETUP", "0")
    return tmp_path / "torch_home"


def pair(b=2, h=48, w=40, noise=0.05, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(b, 3, h, w, generator=g, dtype=dtype)
    pred = (gt + noise * torch.randn(b, 3, h, w, generator=g, dtype=dtype)).clamp(0, 1)
    return pred, gt


# ---------------------------------------------------------------------------------------------- PSNR
def test_psnr_hand_values():
    gt = torch.zeros(2, 3, 8, 8)
    pred = torch.stack([torch.full((3, 8, 8), 0.1), torch.full((3, 8, 8), 0.01)])
    assert torch.allclose(psnr(pred, gt), torch.tensor([20.0, 40.0]), atol=1e-4)  # -10 log10(0.01), (1e-4)
    # half the pixels off by 0.5: mse = 0.125 -> 9.0309 dB
    p = torch.zeros(1, 3, 4, 4)
    p[..., :2] = 0.5
    assert psnr(p, torch.zeros_like(p)).item() == pytest.approx(-10 * math.log10(0.125), abs=1e-5)
    assert psnr(gt, gt).isinf().all()


def test_psnr_matches_numpy_and_mask_normalisation():
    pred, gt = pair(dtype=torch.float64)
    mse = ((pred.numpy() - gt.numpy()) ** 2).reshape(2, -1).mean(1)
    assert np.allclose(psnr(pred, gt).numpy(), -10 * np.log10(mse), atol=1e-10)
    mask = torch.zeros(2, 1, 48, 40, dtype=torch.float64)
    mask[..., 10:30, 5:25] = 1
    mse_m = ((pred - gt) ** 2)[..., 10:30, 5:25].reshape(2, -1).mean(1)
    assert torch.allclose(psnr(pred, gt, mask=mask), -10 * torch.log10(mse_m), atol=1e-10)


def test_psnr_clips_inputs_and_checks_shapes():
    gt = torch.zeros(1, 3, 4, 4)
    assert psnr(torch.full((1, 3, 4, 4), 2.0), gt).item() == pytest.approx(0.0, abs=1e-6)  # clipped to 1
    with pytest.raises(DataError):
        psnr(torch.zeros(1, 4, 4, 3), torch.zeros(1, 4, 4, 3))
    with pytest.raises(DataError):
        psnr(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))


# ---------------------------------------------------------------------------------------------- SSIM
def reference_ssim(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Independent float64 SSIM: separable 11x11 Gaussian (sigma 1.5), valid convolution, population
    (co)variances, C1=(0.01)^2, C2=(0.03)^2, mean over channels and valid pixels. x, y: (B, 3, H, W)."""
    r = np.arange(11) - 5.0
    g = np.exp(-(r ** 2) / (2 * 1.5 ** 2))
    g /= g.sum()

    def filt(a):  # valid separable filtering along H then W
        h = sum(g[i] * a[..., i:a.shape[-2] - 10 + i, :] for i in range(11))
        return sum(g[i] * h[..., :, i:h.shape[-1] - 10 + i] for i in range(11))

    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx ** 2, filt(y * y) - my ** 2, filt(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.reshape(s.shape[0], -1).mean(1)


def test_ssim_identical_is_one():
    _, gt = pair()
    assert torch.allclose(ssim(gt, gt), torch.ones(2), atol=1e-6)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-6)])
def test_ssim_matches_independent_float64_reference(dtype, tol):
    pred, gt = pair(noise=0.1, seed=3, dtype=dtype)
    ref = reference_ssim(pred.double().numpy(), gt.double().numpy())
    assert np.allclose(ssim(pred, gt).double().numpy(), ref, atol=tol, rtol=0)


def test_ssim_matches_skimage_gaussian_ssim():
    from skimage.metrics import structural_similarity

    pred, gt = pair(b=1, noise=0.08, seed=4, dtype=torch.float64)
    sk = structural_similarity(pred[0].permute(1, 2, 0).numpy(), gt[0].permute(1, 2, 0).numpy(),
                               gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                               data_range=1.0, channel_axis=-1)
    assert ssim(pred, gt).item() == pytest.approx(sk, abs=1e-10)


def _bright_low_contrast_pair(seed=0):
    """8-bit images near white with small differences (a head on a white background): the
    float32 variance ``E[x^2] - mu^2`` cancels badly here."""
    g = torch.Generator().manual_seed(seed)
    gt = 0.9 + 0.1 * torch.rand(2, 3, 64, 56, generator=g, dtype=torch.float64)
    pred = (gt + 0.004 * torch.randn(2, 3, 64, 56, generator=g, dtype=torch.float64)).clamp(0, 1)
    return torch.round(pred * 255) / 255, torch.round(gt * 255) / 255


def _skimage_ssim(pred: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    from skimage.metrics import structural_similarity

    return np.array([structural_similarity(p.permute(1, 2, 0).double().numpy(), t.permute(1, 2, 0).double().numpy(),
                                           gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                           data_range=1.0, channel_axis=-1) for p, t in zip(pred, gt)])


def test_ssim_float32_inputs_agree_with_skimage_and_float64_reference_to_1e6():
    """The statistics are float64 whatever the input dtype: float32 inputs (exact 8-bit levels up to
    float32 rounding) agree with skimage and the independent float64 reference to 1e-6 (float32
    statistics were ~6e-6 off here)."""
    pred, gt = _bright_low_contrast_pair()
    sk = _skimage_ssim(pred, gt)
    ref = reference_ssim(pred.numpy(), gt.numpy())
    assert np.allclose(sk, ref, atol=1e-12, rtol=0)  # the two references agree
    ours32 = ssim(pred.float(), gt.float()).double().numpy()
    ours64 = ssim(pred, gt).numpy()
    assert np.abs(ours32 - sk).max() < 1e-6 and np.abs(ours64 - sk).max() < 1e-12


def test_protocol_ssim_agrees_with_skimage_to_1e6():
    from avatarbench.metrics.protocol import EvalProtocol, evaluate_images

    pred, gt = _bright_low_contrast_pair(seed=1)
    sk = _skimage_ssim(pred, gt)
    for i in range(2):
        out = evaluate_images(pred[i].permute(1, 2, 0).float(), gt[i].permute(1, 2, 0).float(), None,
                              EvalProtocol(metrics=("ssim",)))
        assert abs(out["ssim"] - sk[i]) < 1e-6


def test_ssim_masked_is_weighted_mean_of_map_and_small_images_rejected():
    from avatarbench.metrics.image import ssim_map

    pred, gt = pair(b=1, dtype=torch.float64)
    smap = ssim_map(pred, gt)
    mask = torch.zeros(1, 1, 48, 40, dtype=torch.float64)
    mask[..., 20:40, 10:30] = 1
    expected = smap[..., 15:35, 5:25].mean()  # map pixel (i, j) <-> image pixel (i + 5, j + 5)
    assert ssim(pred, gt, mask=mask).item() == pytest.approx(expected.item(), abs=1e-12)
    with pytest.raises(DataError):
        ssim(torch.zeros(1, 3, 10, 20), torch.zeros(1, 3, 10, 20))


# ---------------------------------------------------------------------------------------------- LPIPS
def test_lpips_unavailable_returns_none_with_reason(no_lpips_weights):
    pred, gt = pair(h=64, w=64)
    for net in ("alex", "vgg"):
        ok, reason = lpips_available(net)
        assert not ok
        assert lw.BACKBONE_FILES[net] in reason and str(no_lpips_weights) in reason
        assert "download.pytorch.org" in reason  # says how to obtain it
        assert lpips(pred, gt, net) is None
    module, why = perceptual_loss_module("vgg")
    assert module is None and "vgg16-397923af.pth" in why


def test_lpips_test_only_random_backbone_is_finite_and_flagged(no_lpips_weights):
    pred, gt = pair(h=64, w=64)
    v = lpips(pred, gt, "alex", _test_only_random_backbone=True)
    assert v is not None and v.shape == (2,) and torch.isfinite(v).all() and (v > 0).all()
    assert torch.allclose(lpips(gt, gt, "alex", _test_only_random_backbone=True), torch.zeros(2), atol=1e-6)
    # seeded: a second network built from scratch gives the same number
    lw._CACHE.clear()
    assert torch.allclose(lpips(pred, gt, "alex", _test_only_random_backbone=True), v)
    # the legacy [0,1]-input switch changes the number
    v01 = lpips(pred, gt, "alex", legacy_zero_one_input=True, _test_only_random_backbone=True)
    assert not torch.allclose(v, v01)
    st = lw.lpips_status(("alex",), _test_only_random_backbone=True)["alex"]
    assert st["test_only_random"] and not st["available"] and lw.TEST_ONLY_LABEL in st["reason"]


def test_perceptual_loss_module_is_differentiable_test_only(no_lpips_weights):
    module, why = perceptual_loss_module("alex", _test_only_random_backbone=True)
    assert module is not None and module.test_only_random_backbone and "TEST ONLY" in why
    pred, gt = pair(b=1, h=64, w=64)
    pred.requires_grad_(True)
    loss = module(pred, gt)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in module.parameters())


def _fake_alexnet_file(path, seed=0):
    """A torchvision-format AlexNet state dict with seeded random values (stands in for the real file)."""
    import torchvision

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        sd = torchvision.models.alexnet(weights=None).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return sd


def test_lpips_backbone_loaded_from_torch_hub_cache(no_lpips_weights):
    sd = _fake_alexnet_file(no_lpips_weights / "hub" / "checkpoints" / lw.BACKBONE_FILES["alex"], seed=11)
    ok, reason = lpips_available("alex")
    assert ok and lw.BACKBONE_FILES["alex"] in reason
    net = lw.load_lpips_network("alex", _test_only_random_backbone=False)
    assert not net.avatarbench_test_only
    # every backbone tensor comes from the file (torchvision features.<i> -> lpips slice<k>.<i>)
    for key, t in net.net.state_dict().items():
        layer, param = key.split(".")[1:]
        assert torch.equal(t, sd[f"features.{layer}.{param}"])
    pred, gt = pair(h=64, w=64)
    v = lpips(pred, gt, "alex")
    assert v is not None and torch.isfinite(v).all()
    # independent computation with the lpips package and the same backbone
    import lpips as lpips_pkg

    with torch.random.fork_rng(), pytest.warns(UserWarning):  # torchvision `pretrained=` deprecation
        ref_net = lpips_pkg.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    ref_net.net.load_state_dict(net.net.state_dict())
    with torch.no_grad():
        ref = ref_net(pred, gt, normalize=True).flatten()
    assert torch.allclose(v, ref, atol=1e-6)


def test_lpips_explicit_path_and_env_and_bad_file(tmp_path, no_lpips_weights, monkeypatch):
    f = tmp_path / "weights" / "my_alexnet.pth"
    _fake_alexnet_file(f)
    assert lw.resolve_backbone("alex", f) == (f, "")
    assert lw.resolve_backbone("alex", f.parent)[0] is None  # folder without the canonical name
    monkeypatch.setenv(lw.ENV_BACKBONE, str(f))
    assert lw.resolve_backbone("alex")[0] == f
    # an alexnet file offered for vgg is rejected when loaded, with a one-line message
    with pytest.raises(ModelFileError, match="vgg"):
        lw.load_lpips_network("vgg", backbone=f, _test_only_random_backbone=False)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelFileError, match="bad.pth"):
        lw.load_lpips_network("alex", backbone=bad, _test_only_random_backbone=False)
    ok, reason = lpips_available("alex", backbone=tmp_path / "missing.pth")
    assert not ok and "missing.pth" in reason


def test_lpips_rejects_tiny_images():
    with pytest.raises(DataError):
        lpips(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16), "alex", _test_only_random_backbone=True)
