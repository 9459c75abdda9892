"""``AvatarMethod.gaussians_at``: rasterizing the returned Gaussians reproduces ``render()``
exactly, for every method the viewer shows client-side (tiny in-memory subjects)."""

from __future__ import annotations

import pytest
import torch

from avatarbench.data.camera import stack_cameras
from avatarbench.render import rasterize
from tests.methods.test_animatable_gaussians_support import tiny_ag_cfg, tiny_body_subject
from tests.methods.test_gaussian_avatars_method import flame, make_method, subject  # noqa: F401 (fixtures)

torch.set_num_threads(1)


def _raster(g, frame, background):
    viewmats, Ks = stack_cameras([frame.camera])
    bg = torch.as_tensor(background, dtype=torch.float32)[None]
    rgb, _, _ = rasterize(g.means, g.quats, g.scales, g.opacities, g.colors, viewmats, Ks, frame.camera.width,
                          frame.camera.height, sh_degree=g.sh_degree, backgrounds=bg, backend="torch")
    return rgb[0].clamp(0, 1)


def test_gaussian_avatars_with_sh(subject):  # noqa: F811
    m = make_method(subject)
    with torch.no_grad():  # a view-dependent colour, so the SH path is exercised
        m.params["shN"].normal_(0, 0.2, generator=torch.Generator().manual_seed(0))
    m.active_sh_degree = 1
    f = subject.frames("self_reenact")[0]
    g = m.gaussians_at(f)
    assert g.sh_degree == 1 and g.colors.shape[1] >= 4
    torch.testing.assert_close(_raster(g, f, f.background), m.render(f).rgb, atol=1e-6, rtol=0)


def test_flame_gaussians(subject):  # noqa: F811
    from avatarbench.methods.baseline.method import FlameGaussians
    from omegaconf import OmegaConf

    from avatarbench.paths import configs_dir

    cfg = OmegaConf.load(configs_dir() / "methods" / "flame_gaussians.yaml").method
    m = FlameGaussians(cfg, subject, torch.device("cpu"))
    m.setup(subject.frames("train"))
    f = subject.frames("self_reenact")[0]
    g = m.gaussians_at(f)
    assert g.sh_degree is None and g.colors.shape == (m.num_gaussians(), 3)
    torch.testing.assert_close(_raster(g, f, subject.background), m.render(f).rgb, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["lbs_gaussians", "animatable_gaussians"])
def test_body_methods(name, tmp_path):
    subject = tiny_body_subject(tmp_path)
    if name == "lbs_gaussians":
        from tests.methods.test_lbs_gaussians import cfg
        from avatarbench.methods.baseline.lbs_gaussians import LbsGaussians as cls

        c = cfg()
    else:
        from avatarbench.methods.animatable_gaussians.method import AnimatableGaussians as cls

        c = tiny_ag_cfg()
    m = cls(c, subject, torch.device("cpu"))
    m.setup(subject.frames("train"))
    f = subject.frames("novel_view")[0] if subject.frames("novel_view") else subject.frames("train")[0]
    g = m.gaussians_at(f)
    assert g.means.shape == (m.num_gaussians(), 3)
    torch.testing.assert_close(_raster(g, f, m.background), m.render(f).rgb, atol=1e-6, rtol=0)


def test_gaussian_head_avatar_has_no_client_side_splats():
    from avatarbench.engine.method import AvatarMethod
    from avatarbench.methods.gaussian_head_avatar.method import GaussianHeadAvatar

    assert GaussianHeadAvatar.gaussians_at is AvatarMethod.gaussians_at  # feature map + super-resolution
