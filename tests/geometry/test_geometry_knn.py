"""Chunked kNN against torch.cdist brute force."""

from __future__ import annotations

import pytest
import torch

from avatarbench.geometry import knn, mean_knn_distance

torch.set_num_threads(1)


@pytest.mark.parametrize("backend, chunk", [("torch", 7), ("torch", 64), ("torch", 4096), ("scipy", 0)])
def test_knn_matches_cdist(backend, chunk):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(300, 3, generator=g, dtype=torch.float64)
    r = torch.randn(257, 3, generator=g, dtype=torch.float64)
    d, i = knn(q, r, 6, chunk=chunk, backend=backend)
    ref_d, ref_i = torch.cdist(q, r).topk(6, dim=1, largest=False)
    assert torch.allclose(d, ref_d, atol=1e-12)
    assert torch.equal(i, ref_i)
    d2, i2 = knn(q, r, 6, chunk=chunk, squared=True, backend=backend)
    assert torch.allclose(d2, ref_d ** 2, atol=1e-12) and torch.equal(i2, ref_i)


@pytest.mark.parametrize("backend, exact", [("torch", False), ("torch", True), ("scipy", False)])
def test_knn_float32_far_from_origin(backend, exact):
    # a small cloud far from the origin: without centring, the |q|^2+|r|^2-2qr expansion would
    # rank neighbours at random in float32; returned distances are recomputed exactly
    g = torch.Generator().manual_seed(1)
    base = torch.tensor([100.0, 100.0, 100.0])
    q = base + 1e-3 * torch.randn(50, 3, generator=g)
    r = base + 1e-3 * torch.randn(80, 3, generator=g)
    d, i = knn(q, r, 2, chunk=16, exact=exact, backend=backend)
    assert torch.allclose(d, (q[:, None] - r[i]).norm(dim=-1), rtol=1e-6, atol=0)
    ref_d, ref_i = torch.cdist(q.double(), r.double()).topk(2, dim=1, largest=False)
    assert torch.equal(i, ref_i)
    assert (d.double() - ref_d).abs().max() < 1e-8


@pytest.mark.parametrize("backend", ["torch", "scipy"])
def test_knn_exclude_self_and_mean_distance(backend):
    g = torch.Generator().manual_seed(2)
    p = torch.rand(200, 3, generator=g, dtype=torch.float64)
    d, i = knn(p, p, 3, chunk=50, exclude_self=True, backend=backend)
    D = torch.cdist(p, p)
    D.fill_diagonal_(float("inf"))
    ref_d, ref_i = D.topk(3, dim=1, largest=False)
    assert torch.allclose(d, ref_d, atol=1e-12) and torch.equal(i, ref_i)
    assert (i != torch.arange(200)[:, None]).all()
    assert torch.allclose(mean_knn_distance(p, 3, chunk=50, backend=backend), (ref_d ** 2).mean(1), atol=1e-12)


def test_knn_exclude_self_with_duplicate_points():
    p = torch.tensor([[0.0, 0, 0], [0, 0, 0], [0, 0, 0], [1, 0, 0], [3, 0, 0]], dtype=torch.float64)
    for backend in ("torch", "scipy"):
        d, i = knn(p, p, 2, exclude_self=True, backend=backend)
        assert (i != torch.arange(5)[:, None]).all()
        assert torch.allclose(d[:3], torch.zeros(3, 2, dtype=torch.float64))
        assert torch.allclose(d[3], torch.tensor([1.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("backend", ["torch", "scipy"])
def test_knn_differentiable_and_errors(backend):
    q = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    r = torch.randn(20, 3, dtype=torch.float64, requires_grad=True)
    d, _ = knn(q, r, 2, backend=backend)
    d.sum().backward()
    assert q.grad.abs().sum() > 0 and r.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        knn(q, r, 21)
    with pytest.raises(ValueError):
        knn(q, r, 1, exclude_self=True)
    with pytest.raises(ValueError):
        knn(q[:, :2], r, 1)
    with pytest.raises(ValueError):
        knn(q, r, 1, backend="faiss")


@pytest.mark.gpu
def test_knn_cuda_matches_cpu():
    g = torch.Generator().manual_seed(3)
    q = torch.randn(5000, 3, generator=g)
    r = torch.randn(7000, 3, generator=g)
    d_cpu, i_cpu = knn(q, r, 4, backend="scipy")
    d_gpu, i_gpu = knn(q.cuda(), r.cuda(), 4)  # auto -> torch brute force on CUDA
    assert torch.allclose(d_gpu.cpu(), d_cpu, atol=1e-6)
    assert (i_gpu.cpu() == i_cpu).float().mean() > 0.999  # float32 near-ties may swap
