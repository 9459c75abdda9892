"""The viewer on a tiny trained smoke run: bad run folders, the app's scene, the HTML export, and
a real headless Chromium (Debian's ``chromium``) over the DevTools protocol.

The browser test is skipped with its reason where Chromium or websocket-client is missing. Set
``AVATARBENCH_UPDATE_SCREENSHOT=1`` to refresh the README screenshot (docs/img/viewer.png).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from avatarbench.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from avatarbench.engine.config import RunRequest
    from avatarbench.engine.run import execute

    out = tmp_path_factory.mktemp("viewer") / "fg"
    req = RunRequest(method="flame_gaussians", split="self_reenact", preset="smoke",
                     sets=("method.train.iterations=5", "protocol.max_frames=2", "output.save_videos=false",
                           "protocol.lpips_nets=[]", "engine.num_threads=1"))
    execute(req, out, echo=lambda *_: None, progress=False)
    return out


@pytest.fixture(scope="module")
def app(smoke_run):
    from avatarbench.viewer.app import ViewerApp
    from avatarbench.viewer.runs import RunView

    torch.set_num_threads(1)
    logs: list[str] = []
    a = ViewerApp([RunView.open(smoke_run)], port=_free_port(), log=logs.append)
    a.url = a.start()
    a.logs = logs
    yield a
    a.stop()


def test_bad_run_folders_get_one_line_messages(tmp_path, smoke_run):
    from avatarbench.cli.main import main
    from avatarbench.engine.checkpoint import save_checkpoint
    from avatarbench.engine.restore import load_trained_run

    with pytest.raises(DataError, match="not an avatarbench run folder"):
        load_trained_run(tmp_path)
    with pytest.raises(DataError, match="no such folder"):
        load_trained_run(tmp_path / "missing")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("run.json", "config.yaml"):
        shutil.copy(smoke_run / name, unfinished / name)
    with pytest.raises(DataError, match="unfinished run: no checkpoint yet"):
        load_trained_run(unfinished)
    save_checkpoint(unfinished, 2, {"step": 2, "method": {}, "sampler": {}, "rng": {}, "train_seconds": 0.0})
    with pytest.raises(DataError, match="unfinished run: trained 2 of 5 steps"):
        load_trained_run(unfinished)
    # a checkpoint that would need arbitrary unpickling is refused, not executed
    bad = unfinished / "checkpoints" / "step_00000009.pt"
    torch.save({"step": 9, "x": Path("/tmp")}, bad)
    with pytest.raises(DataError, match="not a readable avatarbench checkpoint"):
        load_trained_run(unfinished)
    # the CLI prints it as one line
    with pytest.raises(SystemExit) as e:
        main(["view", str(tmp_path)])
    assert e.value.code == 2


def test_export_refuses_methods_without_client_side_splats(tmp_path):
    from avatarbench.viewer.export import export_html

    class NoSplats:
        label, client_side = "gaussian_head_avatar (x)", False

    with pytest.raises(ConfigError, match="gaussian_head_avatar.*renders through a network"):
        export_html([NoSplats()], tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_restored_run_rerenders_its_saved_evaluation_exactly(app, smoke_run):
    from PIL import Image

    v = app.views[0]
    for f in v.subject.frames("self_reenact")[:2]:  # the run scored protocol.max_frames=2
        png = smoke_run / "eval" / "self_reenact" / "renders" / f"cam_{f.camera.id:02d}" / (f.key.replace("/", "__") + ".png")
        saved = np.asarray(Image.open(png).convert("RGB"))
        np.testing.assert_array_equal(v.render(f)[0], saved)


def test_app_scene_timeline_inspect_and_bad_requests(app, smoke_run):
    v = app.views[0]
    node = app.splat_nodes[0]
    n = v.method.num_gaussians()
    assert node.centers.shape == (n, 3)
    before = node.centers.copy()
    app.g_frame.value = 1
    assert not np.allclose(node.centers, before)  # next timestep: the FLAME mesh moved the splats
    f = app.current_frames()[0]
    sp = v.splats(f)
    np.testing.assert_allclose(node.centers, sp.centers, rtol=1e-6)
    # manual driving moves the jaw's splats only through the offsets
    app.g_manual.value = True
    app.g_controls["jaw_open"].value = 0.4
    assert not np.allclose(node.centers, sp.centers)
    app.g_controls["jaw_open"].value = 0.0
    np.testing.assert_allclose(node.centers, sp.centers, rtol=1e-6)
    app.g_manual.value = False
    # play advances the timeline by itself
    start = int(app.g_frame.value)
    app.g_fps.value = 30
    app.g_play.value = True
    deadline = time.monotonic() + 20
    while int(app.g_frame.value) == start and time.monotonic() < deadline:
        time.sleep(0.05)
    app.g_play.value = False
    assert int(app.g_frame.value) != start
    # GT panel: the per-image record of this frame from eval/self_reenact/metrics_per_image.csv
    import csv

    rows = {r["key"]: r for r in csv.DictReader(open(smoke_run / "eval/self_reenact/metrics_per_image.csv"))}
    app.g_frame.value = 0
    app.g_inspect.value = True
    key = app.current_frames()[0].key
    assert f"PSNR {float(rows[key]['psnr']):.2f} dB" in app.g_metrics.content
    assert len(app.g_images) == 1
    app.g_inspect.value = False
    app.g_mesh.value = True
    assert app.mesh_nodes[0].vertices.shape[1] == 3
    app.g_mesh.value = False
    # the server path: method.render() for the browser's camera (here: dataset camera 0 exactly)
    from avatarbench.viewer.runs import camera_from_view, camera_pose_wxyz

    cam = app.current_frames()[0].camera
    q, t = camera_pose_wxyz(cam)

    class FakeClient:
        class camera:  # noqa: N801
            wxyz, position = q, t
            fov = float(2 * np.arctan(0.5 * cam.height / cam.fy))
            aspect = cam.width / cam.height

    app.g_res.value = 48
    img = app.server_render(FakeClient)
    direct = v.render(app.current_frames()[0], camera_from_view(q, t, FakeClient.camera.fov, FakeClient.camera.aspect,
                                                                 48))[0]
    assert np.abs(img.astype(int) - direct.astype(int)).max() <= 1  # alpha compositing of one run = its render
    assert img.shape == (48, round(48 * cam.width / cam.height), 3) and img.dtype == np.uint8
    assert (np.abs(img.astype(int) - 255).max(-1) > 12).mean() > 0.05  # the avatar, not only background
    # a failing request is reported, the server keeps running
    app._guard(lambda _e: v.frame("no_such_split", 0))(None)
    assert app.logs and app.logs[-1].startswith("viewer: ValueError: unknown timeline")
    assert app.splat_nodes[0].centers.shape == (n, 3)


def test_export_html(smoke_run, tmp_path, app):
    from avatarbench.viewer.export import export_html

    out = export_html(app.views, tmp_path / "avatar.html", split="self_reenact", max_frames=2, port=_free_port())
    text = out.read_text()
    assert "window.__VISER_EMBED_DATA__=" in text and "</html>" in text.lower()
    assert out.stat().st_size > 2 * 32 * app.views[0].method.num_gaussians() // 2  # two frames of packed splats


def _chromium_reason() -> str | None:
    from tests.viewer.cdp import chromium_path

    if chromium_path() is None:
        return "chromium not installed (Debian: apt-get install -y chromium)"
    try:
        import websocket  # noqa: F401
    except ImportError:
        return "websocket-client not installed (pip install -e '.[dev]')"
    return None


def _projected_pixels(app, width, height):
    """Integer pixel positions of the opaque splats for the browser's current camera."""
    from avatarbench.viewer.runs import camera_from_view

    client = next(iter(app.server.get_clients().values()))
    cam = camera_from_view(client.camera.wxyz, client.camera.position, client.camera.fov, width / height, height)
    v = app.views[0]
    g = v.method.gaussians_at(app.current_frames()[0])
    keep = g.opacities > 0.5
    uvz = cam.project(g.means[keep].to(torch.float64) + torch.as_tensor(app.offsets[0]))
    uv = uvz[:, :2].numpy()
    ok = (uvz[:, 2].numpy() > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    return np.floor(uv[ok]).astype(int)


def _settled(b, img, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1.0)
        nxt = b.screenshot()
        if np.abs(nxt.astype(int) - img.astype(int)).mean() < 0.2:
            return nxt
        img = nxt
    return img


def _usable(px, width):
    # leave out the GUI panel (right) and viser's notification (top left)
    x, y = px[:, 0], px[:, 1]
    return px[(x < width - 360) & ~((x < 330) & (y < 170))]


@pytest.mark.timeout(240)
def test_browser_shows_the_avatar_where_its_projection_says(app):
    reason = _chromium_reason()
    if reason:
        pytest.skip(reason)
    from tests.viewer.cdp import Browser

    app.g_show_cams.value = False
    app.g_frame.value = 0
    W, H = 1000, 700
    b = Browser(W, H)
    try:
        b.goto(app.url)
        deadline = time.monotonic() + 90
        frac, img = 0.0, None
        while time.monotonic() < deadline:
            time.sleep(2.0)
            if not app.server.get_clients():
                continue
            img = b.screenshot()
            px = _usable(_projected_pixels(app, img.shape[1], img.shape[0]), img.shape[1])
            bg = np.abs(img[px[:, 1], px[:, 0]].astype(int) - 255).max(-1) < 12  # viser's white canvas
            frac = 1.0 - bg.mean()
            if frac > 0.9:
                break
        assert img is not None, "the page never connected to the viewer"
        img = _settled(b, img)  # splats fade in: wait until two screenshots agree
        assert len(px) > 200, "the avatar projects outside the visible canvas"
        assert frac > 0.9, f"only {frac:.0%} of the avatar's projected pixels differ from the background"
        # pixels well away from the projected avatar are background
        x0, y0 = px.min(0)
        x1, y1 = px.max(0)
        far = img[max(0, y0 - 200):max(1, y0 - 40), max(0, x0):x1 + 1]
        if far.size:
            assert (np.abs(far.astype(int) - 255).max(-1) < 12).mean() > 0.95
        if os.environ.get("AVATARBENCH_UPDATE_SCREENSHOT"):
            from PIL import Image

            (REPO / "docs" / "img").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(REPO / "docs" / "img" / "viewer.png", optimize=True)
        # moving the timeline changes the image
        counter = app.frame_counter
        app.g_frame.value = int(app.g_frame.max)
        assert app.frame_counter > counter
        changed = 0.0
        t_end = time.monotonic() + 30
        while time.monotonic() < t_end and changed < 0.02:
            time.sleep(1.5)
            after = b.screenshot()
            px2 = _usable(_projected_pixels(app, W, H), W)
            region = np.zeros((H, W), bool)
            region[px[:, 1], px[:, 0]] = True
            region[px2[:, 1], px2[:, 0]] = True
            changed = (np.abs(after.astype(int) - img.astype(int)).max(-1)[region] > 20).mean()
        assert changed > 0.02, f"the timeline move changed only {changed:.1%} of the avatar's pixels"
    finally:
        b.close()


@pytest.mark.timeout(180)
def test_exported_html_opens_from_disk_and_shows_the_avatar(app, tmp_path):
    reason = _chromium_reason()
    if reason:
        pytest.skip(reason)
    from tests.viewer.cdp import Browser
    from avatarbench.viewer.export import export_html

    out = export_html(app.views, tmp_path / "avatar.html", split="self_reenact", max_frames=2, port=_free_port())
    b = Browser(800, 600)
    try:
        b.goto(out.as_uri())
        frac, deadline = 0.0, time.monotonic() + 60
        while time.monotonic() < deadline and frac < 0.05:
            time.sleep(2.0)
            img = b.screenshot()
            centre = img[150:500, 250:650]  # the initial camera looks at the avatar's centre
            frac = (np.abs(centre.astype(int) - 255).max(-1) > 12).mean()
        assert frac > 0.05, f"the exported page shows no avatar ({frac:.1%} non-background pixels at its centre)"
    finally:
        b.close()


@pytest.mark.timeout(180)
def test_cli_view_prints_its_url_and_serves_the_page(smoke_run):
    import subprocess
    import sys
    import urllib.request

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from avatarbench.cli.main import main; main()", "view",
                             str(smoke_run), "--port", str(port), "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        deadline = time.monotonic() + 150
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "avatarbench view: serving" in line:
                url = line.split(" at ")[1].split()[0]
        assert url == f"http://localhost:{port}", url
        with urllib.request.urlopen(url, timeout=30) as r:
            assert r.status == 200 and b"<html" in r.read(2000).lower()
    finally:
        proc.terminate()
        proc.wait(30)
