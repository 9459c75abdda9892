"""GaussianAvatars as an AvatarMethod: binding, training with density control, FLAME fine-tuning,
state_dict round trip, export -- on the stand-in FLAME with a hand-made tiny subject, plus an
end-to-end smoke run through the engine (slow)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from avatarbench.data.camera import Camera
from avatarbench.data.subject import Frame, Subject
from avatarbench.engine.method import Sample
from avatarbench.paths import configs_dir

torch.set_num_threads(1)

W, H = 24, 32


def ga_cfg(**overrides):
    node = OmegaConf.load(configs_dir() / "methods" / "gaussian_avatars.yaml").method
    cfg = OmegaConf.merge(node, OmegaConf.create(overrides))
    cfg.render_backend = "torch"
    return cfg


def look_at_head(cid: int, angle: float, dist: float = 0.55) -> Camera:
    """A camera on a circle around the y axis looking at the head (FLAME: face towards +z)."""
    eye = [dist * math.sin(angle), 0.0, dist * math.cos(angle)]
    f = 1.6 * W
    return Camera.look_at(eye, [0.0, 0.0, 0.0], f, f * 1.02, W / 2 + 0.3, H / 2 - 0.2, W, H, up=(0.0, -1.0, 0.0), id=cid)  # the camera these tests were written with


def driving(t: int, num_verts: int) -> dict[str, np.ndarray]:
    expr = np.zeros(100, np.float32)
    expr[0] = 0.3 * t
    return {"shape": np.zeros(300, np.float32), "expr": expr, "rotation": np.array([0.0, 0.05 * t, 0.0], np.float32),
            "neck_pose": np.zeros(3, np.float32), "jaw_pose": np.array([0.05 * t, 0, 0], np.float32),
            "eyes_pose": np.zeros(6, np.float32), "translation": np.zeros(3, np.float32),
            "static_offset": np.zeros((num_verts, 3), np.float32)}


@pytest.fixture(scope="module")
def flame():
    from avatarbench.bodymodels.flame import load_flame

    return load_flame(None, teeth=True)


@pytest.fixture(scope="module")
def subject(flame, tmp_path_factory):
    nv = int(flame.num_verts)
    cams = {i: look_at_head(i, a) for i, a in enumerate([-0.6, 0.0, 0.6, 0.3])}
    frames = {"train": [], "novel_view": [], "self_reenact": []}
    for t in range(2):
        for c in (0, 1, 2):
            frames["train"].append(Frame("tiny", "SEQ", t, cams[c], None, None, driving(t, nv)))
        frames["novel_view"].append(Frame("tiny", "SEQ", t, cams[3], None, None, driving(t, nv)))
    frames["self_reenact"].append(Frame("tiny", "TEST", 5, cams[1], None, None, driving(5, nv)))
    return Subject("tiny", "head", tmp_path_factory.mktemp("tiny"), cams, frames, body_model="flame")


def target_image() -> torch.Tensor:
    """A skin-coloured ellipse on white."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    inside = ((xx / 0.6) ** 2 + (yy / 0.8) ** 2 < 1).float()[..., None]
    return inside * torch.tensor([0.8, 0.6, 0.5]) + (1 - inside)


def make_method(subject, **cfg_overrides):
    from avatarbench.methods.gaussian_avatars.method import GaussianAvatars

    torch.manual_seed(0)
    m = GaussianAvatars(ga_cfg(**cfg_overrides), subject, torch.device("cpu"))
    m.setup(subject.frames("train"))
    return m


def train(m, subject, steps, start=0):
    frames = subject.frames("train")
    img = target_image()
    logs = []
    for s in range(start, start + steps):
        logs.append(m.train_step(Sample(frames[s % len(frames)], img), s))
    return logs


FAST = dict(train={"iterations": 6, "sh_degree_interval": 2},
            density={"densify_from_iter": 2, "densify_until_iter": 6, "densification_interval": 2,
                     "opacity_reset_interval": 4, "grad_threshold": 1e-9})


# ----------------------------------------------------------------------------- binding
def test_global_params_of_a_known_triangle():
    from avatarbench.methods.gaussian_avatars.model import to_global

    verts = torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 2, 0]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    # a0 = x, a1 = normalize(a0 x (v2 - v0)) = z, a2 = a0 x a1 = -y; k = (2 + |a2 . (v2 - v0)|) / 2 = 2
    params = {"means": torch.tensor([[0.5, 0.0, 0.25]], dtype=torch.float64),
              "quats": torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64),
              "scales": torch.log(torch.tensor([[0.5, 0.25, 1.0]], dtype=torch.float64))}
    means, quats, scales, k = to_global(params, torch.tensor([0]), verts, faces)
    torch.testing.assert_close(k.reshape(-1), torch.tensor([2.0], dtype=torch.float64))
    # mu' = k R mu + T = 2 (0.5 x - 0.25 y) + (2/3, 2/3, 0)
    torch.testing.assert_close(means[0], torch.tensor([1 + 2 / 3, -0.5 + 2 / 3, 0.0], dtype=torch.float64))
    torch.testing.assert_close(scales[0], torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64))
    # r' = q(R): R = [x | z | -y] is a +90 deg rotation about x -> (cos 45, sin 45, 0, 0) up to sign
    q = quats[0] * torch.sign(quats[0, 0])
    torch.testing.assert_close(q, torch.tensor([math.sqrt(0.5), math.sqrt(0.5), 0, 0], dtype=torch.float64))


def test_setup_one_gaussian_per_face_with_and_without_teeth(subject, flame):
    m = make_method(subject)
    f = int(flame.faces.shape[0])
    assert m.num_gaussians() == f and m.face_counts().tolist() == [1] * f
    assert m.sched.iterations == 600_000
    assert m.binding.tolist() == list(range(f))
    nt = make_method(subject, model={"teeth": False})
    assert nt.num_gaussians() == f - 168
    assert nt.flame.num_verts == flame.num_verts - 120
    # the extent: 1.1 x max distance of the 3 training cameras from their mean centre
    centres = torch.stack([c.center for c in (subject.cameras[0], subject.cameras[1], subject.cameras[2])])
    expected = 1.1 * float((centres - centres.mean(0)).norm(dim=1).max())
    assert m.extent == pytest.approx(expected)
    # the position LR starts at 5e-3 x extent
    assert m.optimizers["means"].param_groups[0]["lr"] == pytest.approx(5e-3 * expected)


def test_training_densifies_with_inheritance_and_finetunes_flame(subject):
    m = make_method(subject, **FAST)
    f = m.num_gaussians()
    expr0 = m.track.params["expr"].detach().clone()
    logs = train(m, subject, 6)
    assert all(math.isfinite(lg["loss"]) for lg in logs)
    assert logs[3].get("cloned", 0) + logs[3].get("split", 0) > 0  # it = 4: densification
    assert logs[1].get("reset") == 1 and logs[3].get("reset") == 1  # it = 2 (extra, white bg), it = 4
    n = m.num_gaussians()
    grown = logs[3].get("cloned", 0) + logs[3].get("split", 0) - logs[3].get("pruned", 0)
    assert n == f + grown
    for k, p in m.params.items():
        assert p.shape[0] == n
        st = m.optimizers[k].state.get(p)
        if st is not None:
            assert st["exp_avg"].shape == p.shape
    for k in ("binding", "grad2d", "count", "radii"):
        assert m.state[k].shape[0] == n
    # FLAME expression of the trained timesteps moved (lr 1e-3), shape/static offset did not
    assert not torch.equal(m.track.params["expr"].detach(), expr0)
    assert m.active_sh_degree == 3
    a = m.activity()
    assert a["opacity_reset"] == 2 and a["density_control"] == 1 and a["cloned"] == logs[3].get("cloned", 0)
    assert a["flame_finetune"] == 5  # the last iteration skips the optimisers (official)


def test_regulariser_activity_counts_by_hand(subject):
    m = make_method(subject)
    n = m.num_gaussians()
    teeth0 = int(torch.nonzero(m.flame.teeth_faces_mask)[0])  # binding == arange at init
    with torch.no_grad():
        m.params["means"][0] = torch.tensor([2.0, 0.0, 0.0])   # beyond the position threshold 1
        m.params["means"][1] = torch.tensor([0.0, 0.5, 0.0])   # inside it
        m.params["scales"][1] = math.log(0.5)                   # all axes below 0.6
    all_vis = torch.ones(n, dtype=torch.bool)
    m._count_regulariser_activity(all_vis)
    only1 = torch.zeros(n, dtype=torch.bool)
    only1[1] = True
    m._count_regulariser_activity(only1)
    only0 = torch.zeros(n, dtype=torch.bool)
    only0[[0, teeth0]] = True
    m._count_regulariser_activity(only0)
    a = m.activity()
    # step 1: all visible (hinge: G0; threshold clips G1; scale hinge: exp(0) = 1 > 0.6; teeth seen)
    # step 2: only G1 (inside both thresholds); step 3: G0 and a teeth Gaussian (mean 0: no clip)
    assert (a["position_loss"], a["position_threshold"], a["scaling_loss"], a["scaling_threshold"],
            a["teeth_visible"]) == (2, 2, 2, 2, 2)
    assert a["cloned"] == a["opacity_reset"] == a["flame_finetune"] == 0
    b = make_method(subject)
    b.load_state_dict(m.state_dict())
    assert b.activity() == a


PRUNE = dict(train={"iterations": 8, "sh_degree_interval": 2},
             density={"densify_from_iter": 2, "densify_until_iter": 8, "densification_interval": 4,
                      "opacity_reset_interval": 1000, "extra_reset_white_background": False,
                      "grad_threshold": 1e9})  # it = 4 and 8 (8 = last: not reached), nothing grows


@pytest.mark.parametrize("guard", [True, False])
def test_training_prunes_through_the_guard(subject, guard):
    """Faces whose Gaussians are all transparent keep them all (guard), faces with an opaque one
    lose their transparent ones; without the guard those faces end up empty."""
    m = make_method(subject, **PRUNE)
    m.strategy.prune_guard = guard
    F = m.num_gaussians()
    # three Gaussians on every face: copies of the one-per-face set, as a clone would make
    with torch.no_grad():
        m.strategy.duplicate(m.params, m.optimizers, m.state, torch.ones(F, dtype=torch.bool))
        m.strategy.duplicate(m.params, m.optimizers, m.state, torch.arange(2 * F) < F)
        op = torch.full((3 * F,), -9.0)  # opacity 1.2e-4 < 0.005: flagged
        op[F:2 * F] = torch.where(torch.arange(F) % 2 == 0, 3.0, -9.0)  # even faces: one opaque copy
        m.params["opacities"].data.copy_(op)
    logs = train(m, subject, 4)
    rep = logs[3]
    n_even = (F + 1) // 2
    if guard:
        # even faces lose their 2 transparent Gaussians; odd faces keep all 3 (guard)
        assert rep["pruned"] == 2 * n_even and rep["guarded"] == 3 * (F - n_even)
        counts = m.face_counts()
        assert counts[0::2].tolist() == [1] * n_even and counts[1::2].tolist() == [3] * (F - n_even)
        assert m.activity()["guarded"] == 3 * (F - n_even)
    else:
        assert rep["pruned"] == 3 * F - n_even and rep.get("guarded", 0) == 0
        counts = m.face_counts()
        assert counts[0::2].tolist() == [1] * n_even and counts[1::2].tolist() == [0] * (F - n_even)
    assert m.activity()["prune_opacity"] == 3 * F - n_even and m.activity()["density_control"] == 1


def test_render_uses_finetuned_params_only_for_undriven_trained_timesteps(subject):
    from dataclasses import replace

    m = make_method(subject)
    with torch.no_grad():
        m.track.params["jaw_pose"][:, 0] += 0.4
        m.params["opacities"].fill_(3.0)
    nv = subject.frames("novel_view")[1]
    g_ft = m.geometry(nv)
    g_drv = m.geometry(replace(nv, driver="someone"))
    assert not torch.allclose(g_ft, g_drv)
    assert torch.allclose(g_drv, m.geometry(replace(nv, driver="someone", timestep=99)))
    out = m.render(replace(nv, background=(0.2, 0.4, 0.6)))
    assert out.rgb.shape == (H, W, 3)
    assert float(out.alpha.max()) > 0.5  # the head is in view
    # where nothing covers the pixel the frame's background shows through
    empty = out.alpha[..., 0] < 1e-4
    assert bool(empty.any())
    torch.testing.assert_close(out.rgb[empty], torch.tensor([0.2, 0.4, 0.6]).expand(int(empty.sum()), 3),
                               atol=1e-4, rtol=0)
    sr = subject.frames("self_reenact")[0]  # an untrained timestep: tracked parameters
    assert m.geometry(sr).shape == (m.num_gaussians(), 3)


def test_state_dict_round_trip_resumes_bit_exactly(subject):
    a = make_method(subject, **FAST)
    train(a, subject, 4)  # through the first densification
    sd = a.state_dict()
    b = make_method(subject, **FAST)
    b.load_state_dict(sd)
    assert b.num_gaussians() == a.num_gaussians()
    torch.testing.assert_close(b.render(subject.frames("novel_view")[0]).rgb,
                               a.render(subject.frames("novel_view")[0]).rgb, rtol=0, atol=0)
    train(a, subject, 2, start=4)
    train(b, subject, 2, start=4)
    for k in a.params:
        torch.testing.assert_close(a.params[k], b.params[k], rtol=0, atol=0)
    torch.testing.assert_close(a.track.params["expr"], b.track.params["expr"], rtol=0, atol=0)
    assert torch.equal(a.binding, b.binding)


def official_flame_params(path) -> dict[str, torch.Tensor]:
    """``flame_param.npz`` read as the official ``FlameGaussianModel.load_ply`` does (np.load, every
    array to a tensor, ``num_timesteps = expr.shape[0]``)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: torch.from_numpy(z[k]) for k in z.files}


def official_select_mesh(flame, fp: dict[str, torch.Tensor], t: int) -> torch.Tensor:
    """(V, 3) vertices the way the official ``select_mesh_by_timestep`` calls FLAME."""
    out = flame(shape=fp["shape"][None, ...], expr=fp["expr"][[t]], rotation=fp["rotation"][[t]],
                neck_pose=fp["neck_pose"][[t]], jaw_pose=fp["jaw_pose"][[t]], eyes_pose=fp["eyes_pose"][[t]],
                translation=fp["translation"][[t]], static_offset=fp["static_offset"],
                dynamic_offset=fp["dynamic_offset"][[t]])
    return out.verts[0]


def numpy_face_frames(verts: np.ndarray, faces: np.ndarray):
    """float64 face frames written out from the paper's definition (independent of binding.py)."""
    v0, v1, v2 = (verts[faces[:, i]] for i in range(3))
    e1, e2 = v1 - v0, v2 - v0
    a0 = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    a1 = np.cross(a0, e2)
    a1 /= np.linalg.norm(a1, axis=1, keepdims=True)
    a2 = np.cross(a0, a1)
    k = 0.5 * (np.linalg.norm(e1, axis=1) + np.abs((a2 * e2).sum(1)))
    return (v0 + v1 + v2) / 3.0, np.stack([a0, a1, a2], axis=-1), k


def test_export_global_ply_matches_local_ply_posed_by_the_exported_flame(subject, tmp_path):
    """point_cloud_global.ply == the local point_cloud.ply posed, in float64 numpy, on the mesh
    that the exported flame_param.npz gives for the frame's timestep (read the official way)."""
    from avatarbench.methods.gaussian_avatars.export import read_gaussian_ply

    m = make_method(subject, **FAST)
    train(m, subject, 4)
    frame = subject.frames("novel_view")[1]  # timestep 1: a fine-tuned row
    paths = m.export(tmp_path, frame)
    names = sorted(p.name for p in paths)
    assert names == ["flame_param.npz", "flame_param_rows.json", "point_cloud.ply", "point_cloud_global.ply"]
    glob = read_gaussian_ply(tmp_path / "point_cloud_global.ply")
    loc = read_gaussian_ply(tmp_path / "point_cloud.ply")
    n = m.num_gaussians()
    assert glob["means"].shape == (n, 3) and glob["shN"].shape == (n, 15, 3)
    assert glob["binding"].tolist() == m.binding.tolist() == loc["binding"].tolist()
    fp = official_flame_params(tmp_path / "flame_param.npz")
    with torch.no_grad():
        verts = official_select_mesh(m.flame.double(), {k: v.double() for k, v in fp.items()}, 1).numpy()
    m.flame.float()
    T, R, k = numpy_face_frames(verts, m.faces.numpy())
    b = loc["binding"].numpy()
    mu = loc["means"].numpy().astype(np.float64)
    want = k[b, None] * np.einsum("nij,nj->ni", R[b], mu) + T[b]
    np.testing.assert_allclose(glob["means"].numpy(), want, atol=2e-6)
    np.testing.assert_allclose(glob["scales"].numpy(), np.log(k[b, None]) + loc["scales"].numpy(), atol=1e-5)
    # the fine-tuned jaw of timestep 1 is what posed it (not the tracked one)
    assert not np.allclose(fp["jaw_pose"][1].numpy(), frame.driving["jaw_pose"])


def test_flame_param_npz_loads_like_the_official_viewer_at_every_timestep(subject, tmp_path):
    """Official layout: keys, float32, shape (300,), static_offset (1,V,3), dynamic_offset (T,V,3)
    indexed [[t]]; fine-tuned rows for trained timesteps, tracked rows for the held-out sequence,
    zero rows elsewhere; every timestep poses the mesh the method renders."""
    import json

    m = make_method(subject, **FAST)
    train(m, subject, 4)
    m.export(tmp_path)
    fp = official_flame_params(tmp_path / "flame_param.npz")
    nv = m.flame.num_verts
    assert sorted(fp) == sorted(["shape", "expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation",
                                 "static_offset", "dynamic_offset"])
    assert all(v.dtype == torch.float32 for v in fp.values())
    T = fp["expr"].shape[0]
    assert T == 6  # timesteps 0, 1 (train) and 5 (held out)
    assert fp["shape"].shape == (300,) and fp["static_offset"].shape == (1, nv, 3)
    assert fp["dynamic_offset"].shape == (T, nv, 3) and fp["eyes_pose"].shape == (T, 6)
    assert json.loads((tmp_path / "flame_param_rows.json").read_text()) == {"finetuned": [0, 1], "tracked": [5]}
    sr = subject.frames("self_reenact")[0]
    for t in range(T):
        with torch.no_grad():
            verts = official_select_mesh(m.flame, fp, t)
        if t in (0, 1):
            want = flame_forward_of(m, m.track.driving(t))
        elif t == 5:
            want = flame_forward_of(m, m._driving_for(sr))
            np.testing.assert_array_equal(fp["expr"][5].numpy(), sr.driving["expr"])
        else:
            assert float(fp["expr"][t].abs().sum() + fp["rotation"][t].abs().sum()) == 0
            want = flame_forward_of(m, {**{k: torch.zeros(1, fp[k].shape[1]) for k in
                                           ("expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation")},
                                        **m.track.identity()})
        torch.testing.assert_close(verts, want, msg=f"timestep {t}")


def flame_forward_of(m, driving):
    from avatarbench.methods.gaussian_avatars.model import flame_forward

    with torch.no_grad():
        return flame_forward(m.flame, driving)


def test_reenactment_renders_on_the_trained_identity(subject):
    """A driver frame whose tracking has another identity (shape, static offset) is rendered on the
    TRAINED identity's mesh with the driver's motion (official: one shape/static_offset for all)."""
    from dataclasses import replace

    from avatarbench.methods.gaussian_avatars.model import flame_forward, to_global

    m = make_method(subject)
    sr = subject.frames("self_reenact")[0]
    other = dict(sr.driving)
    other["shape"] = np.linspace(-2.0, 2.0, 300).astype(np.float32)
    other["static_offset"] = np.full_like(sr.driving["static_offset"], 0.01)
    for frame in (replace(sr, driving=other), replace(sr, driving=other, driver="someone")):
        got = m.geometry(frame)
        # independent: FLAME with the training identity (timestep 0: zero shape and offset) and the
        # driver's motion, then the binding transform
        d = {k: torch.as_tensor(np.asarray(v))[None] for k, v in sr.driving.items()}
        d["shape"] = torch.zeros(1, 300)
        d["static_offset"] = torch.zeros(1, m.flame.num_verts, 3)
        want = to_global(m.params, m.binding, flame_forward(m.flame, d), m.faces)[0].detach()
        torch.testing.assert_close(got, want)
        # and the other identity's mesh is really different (the test can tell them apart)
        d_other = {k: torch.as_tensor(np.asarray(v))[None] for k, v in other.items()}
        wrong = to_global(m.params, m.binding, flame_forward(m.flame, d_other), m.faces)[0].detach()
        assert float((got - wrong).norm(dim=1).mean()) > 5e-3


@pytest.mark.slow
def test_smoke_preset_end_to_end(tmp_path):
    """The smoke preset (600 iterations) through the engine on the tiny synthetic head at the smoke
    resolution (69 x 100): training with density control, export, novel-view scoring."""
    from avatarbench.data.registry import resolve_synthetic
    from avatarbench.engine.config import RunRequest
    from avatarbench.engine.run import execute

    root = resolve_synthetic("synth_head", preset="tiny")
    req = RunRequest("gaussian_avatars", "novel_view", "smoke", None, ("data.scale=1.0", "engine.num_threads=1"),
                     data_path=str(root))
    out = execute(req, tmp_path / "run", echo=lambda *a: None, progress=False)
    r = out.results
    assert r["train"]["iterations"] == 600 and r["num_frames"] > 0
    from avatarbench.bodymodels.flame import load_flame

    faces = int(load_flame(None, teeth=True).faces.shape[0])  # the initial one-per-face set
    act = r["train"]["activity"]
    assert r["num_gaussians"] == faces + act["cloned"] + act["split"] - act["pruned"]
    assert act["cloned"] + act["split"] > 0 and r["num_gaussians"] > faces
    assert r["metrics"]["psnr"] > 18.0  # measured 22.8
    assert (out.run_dir / "export" / "point_cloud_global.ply").exists()


@pytest.mark.gpu
def test_gsplat_backend_trains_and_densifies(subject):
    """The same strategy on CUDA with the gsplat backend (means2d gradients from gsplat)."""
    from avatarbench.methods.gaussian_avatars.method import GaussianAvatars

    torch.manual_seed(0)
    cfg = ga_cfg(**FAST)
    cfg.render_backend = "gsplat"
    m = GaussianAvatars(cfg, subject, torch.device("cuda"))
    m.setup(subject.frames("train"))
    frames = subject.frames("train")
    img = target_image().cuda()
    logs = [m.train_step(Sample(frames[s % len(frames)], img), s) for s in range(6)]
    assert all(math.isfinite(lg["loss"]) for lg in logs)
    assert m.num_gaussians() > int(m.flame.faces.shape[0])
    assert int(m.face_counts().min()) >= 1
    out = m.render(subject.frames("novel_view")[0])
    assert out.rgb.is_cuda and out.rgb.shape == (H, W, 3)
