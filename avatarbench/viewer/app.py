"""The ``avatarbench view`` web app (viser).

Layout of the scene: run ``i`` is shown at ``offsets[i]`` (side by side along the first dataset
camera's right axis), so one camera and one timeline drive every run in sync. Two render paths:

- ``splats (client)``: each run's :meth:`gaussians_at` for the current frame goes to a viser
  splat node (scene x10, node scale 0.1: see :mod:`avatarbench.viewer.splats`); SH colours are
  evaluated on the server for the current view; orbiting is drawn by the browser;
- ``renderer (server)``: ``method.render()`` (the exact benchmark render) for the browser's
  camera, composited over the runs with their alpha, sent as the scene's background image.

Every callback is guarded: an error becomes a notification in the page and a one-line log, never
a crash of the server.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np

from avatarbench.viewer.runs import RunView, camera_from_view, camera_pose_wxyz, error_heatmap

MODES = ("splats (client)", "renderer (server)")


def scene_up(views: list[RunView]) -> np.ndarray:
    """Unit up vector of the capture: mean of the dataset cameras' up axes (OpenCV -Y)."""
    cams = list(views[0].subject.cameras.values())
    up = -np.mean([c.cam_to_world[:3, 1].numpy() for c in cams], axis=0)
    n = np.linalg.norm(up)
    return up / n if n > 1e-6 else np.array([0.0, 1.0, 0.0])


def run_offsets(views: list[RunView], spacing: float | None = None) -> list[np.ndarray]:
    """(3,) world offset of each run: side by side along the first camera's right axis."""
    cam = views[0].subject.cameras[sorted(views[0].subject.cameras)[0]]
    right = cam.cam_to_world[:3, 0].numpy()
    if spacing is None:
        pts = views[0].splats(views[0].frame(views[0].timeline_names()[0], 0))
        if pts is not None:
            c = pts.centers / pts.scene_scale
            spacing = 1.5 * float(np.ptp(c @ right))
        else:
            spacing = 0.4 if views[0].kind == "head" else 1.5
    return [-right * spacing * i for i in range(len(views))]  # to the left: the GUI panel is on the right


def configure_initial_camera(server, cam, views: list[RunView], offsets: list[np.ndarray] | None = None) -> None:
    """Start (and "reset view") at dataset camera ``cam`` looking at the first run's avatar; with
    several runs side by side, from the same direction but pulled back to frame all of them."""
    v0 = views[0]
    sp = v0.splats(v0.frame(v0.timeline_names()[0], 0))
    target = (sp.centers.mean(0) / sp.scene_scale) if sp is not None else np.zeros(3)
    center = cam.center.numpy()
    fwd = cam.cam_to_world[:3, 2].numpy()
    dist = float(np.dot(target - center, fwd))
    dist = dist if dist > 0 else 1.0
    if offsets is not None and len(offsets) > 1:
        target = target + np.mean(offsets, axis=0)
        dist *= 1.0 + 0.8 * (len(offsets) - 1)
    ic = server.initial_camera
    ic.position = tuple(float(x) for x in target - fwd * dist)
    ic.look_at = tuple(float(x) for x in target)
    ic.up = tuple(float(u) for u in scene_up(views))
    ic.fov = float(2 * np.arctan(0.5 * cam.height / cam.fy))


class ViewerApp:
    """Serve ``views`` on ``host:port``; :meth:`start` returns once the server listens."""

    def __init__(self, views: list[RunView], host: str = "127.0.0.1", port: int = 8080,
                 render_height: int = 256, log=print):
        self.views = views
        self.host, self.port = host, port
        self.render_height = int(render_height)
        self.log = log
        self.offsets = run_offsets(views)
        self.lock = threading.RLock()
        self.server = None
        self._stop = threading.Event()
        self._dirty = threading.Event()
        self.splat_nodes: dict[int, object] = {}
        self.mesh_nodes: dict[int, object] = {}
        self.frame_counter = 0  # scene updates pushed (tests wait on it)
        self._inspect_pending = False
        self._server_images = False  # a server render is shown as the background

    # ------------------------------------------------------------------ setup
    def start(self) -> str:
        import viser

        self.server = viser.ViserServer(host=self.host, port=self.port, verbose=False)
        self.port = self.server.get_port()
        s = self.server
        up = scene_up(self.views)
        s.scene.set_up_direction(tuple(float(u) for u in up))
        configure_initial_camera(s, self.views[0].subject.cameras[sorted(self.views[0].subject.cameras)[0]],
                                 self.views, self.offsets)
        self._build_gui()
        self._add_cameras()
        s.on_client_connect(self._on_connect)
        self._update_scene()
        threading.Thread(target=self._player, daemon=True).start()
        threading.Thread(target=self._worker, daemon=True).start()
        return f"http://{'localhost' if self.host in ('127.0.0.1', '0.0.0.0') else self.host}:{self.port}"

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self.server is not None:
            self.server.stop()

    def _build_gui(self) -> None:
        gui = self.server.gui
        v0 = self.views[0]
        gui.add_markdown("**Runs:** " + " | ".join(f"{i}: {v.label}" for i, v in enumerate(self.views)))
        with gui.add_folder("Timeline"):
            self.g_split = gui.add_dropdown("split", tuple(v0.timeline_names()),
                                            initial_value="self_reenact" if "self_reenact" in v0.timeline_names()
                                            else v0.timeline_names()[0])
            self.g_frame = gui.add_slider("frame", 0, max(1, len(v0.timeline(self.g_split.value)) - 1), 1, 0)
            self.g_play = gui.add_checkbox("play", False)
            self.g_fps = gui.add_slider("speed (fps)", 1, 30, 1, 10)
            self.g_info = gui.add_markdown("")
        with gui.add_folder("Camera"):
            cams = [str(c) for c in sorted(v0.subject.cameras)]
            self.g_cam = gui.add_dropdown("dataset camera", tuple(cams), initial_value=cams[0])
            self.g_snap = gui.add_button("snap to dataset camera")
            self.g_show_cams = gui.add_checkbox("show dataset cameras", True)
        with gui.add_folder("Render"):
            modes = MODES if all(v.client_side for v in self.views) else MODES[1:]
            self.g_mode = gui.add_dropdown("path", modes, initial_value=modes[0])
            self.g_res = gui.add_slider("server render height", 64, 1024, 32, self.render_height)
        with gui.add_folder("Driving"):
            self.g_manual = gui.add_checkbox("manual offsets", False)
            self.g_controls = {c.name: gui.add_slider(c.label, c.lo, c.hi, (c.hi - c.lo) / 100, 0.0)
                               for c in v0.controls()}
            self.g_reset = gui.add_button("reset offsets")
        with gui.add_folder("Inspect"):
            self.g_mesh = gui.add_checkbox("driving mesh overlay", False)
            self.g_inspect = gui.add_checkbox("GT + error panel", False)
            self.g_metrics = gui.add_markdown("")
            self.g_images: list = []

        for h in (self.g_frame, self.g_cam, self.g_manual, self.g_mesh, *self.g_controls.values()):
            h.on_update(self._guard(lambda _e: self._update_scene()))
        self.g_split.on_update(self._guard(self._on_split))
        self.g_mode.on_update(self._guard(lambda _e: self._update_scene()))
        self.g_res.on_update(self._guard(lambda _e: self._dirty.set()))
        self.g_inspect.on_update(self._guard(lambda _e: self._update_inspect()))
        self.g_show_cams.on_update(self._guard(lambda _e: self._show_cameras(self.g_show_cams.value)))
        self.g_snap.on_click(self._guard(lambda e: self._snap(e.client)))
        self.g_reset.on_click(self._guard(self._reset_controls))

    def _show_cameras(self, visible: bool) -> None:
        for h in self.frustums:
            h.visible = bool(visible)

    def _add_cameras(self) -> None:
        v0 = self.views[0]
        self.frustums = []
        scale = 0.05 if v0.kind == "head" else 0.2
        for cid, cam in sorted(v0.subject.cameras.items()):
            q, t = camera_pose_wxyz(cam)
            fov = 2 * np.arctan(0.5 * cam.height / cam.fy)
            self.frustums.append(self.server.scene.add_camera_frustum(
                f"/cameras/{cid:02d}", fov=float(fov), aspect=cam.width / cam.height, scale=scale,
                thickness=0.03 * scale, wxyz=q, position=t, color=(150, 150, 150), cast_shadow=False,
                receive_shadow=False))

    # ------------------------------------------------------------------ helpers
    def _guard(self, fn):
        def wrapped(event=None):
            try:
                return fn(event)
            except Exception as e:  # noqa: BLE001 -- the server must survive any bad request
                self._report(e, getattr(event, "client", None))
        return wrapped

    def _report(self, e: Exception, client=None) -> None:
        msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        self.log(f"viewer: {msg}")
        if self.server is None:
            return
        targets = [client] if client is not None else list(self.server.get_clients().values())
        for c in targets:
            try:
                c.add_notification("error", msg, auto_close_seconds=8.0, color="red")
            except Exception:  # noqa: BLE001
                pass

    def _values(self) -> dict[str, float] | None:
        if not self.g_manual.value:
            return None
        return {k: float(h.value) for k, h in self.g_controls.items()}

    def current_frames(self):
        """The current frame of every run (with manual offsets)."""
        split, idx = self.g_split.value, int(self.g_frame.value)
        cam = int(self.g_cam.value)
        vals = self._values()
        return [v.driven(v.frame(split, idx, cam), vals) for v in self.views]

    def _view_center(self) -> np.ndarray:
        clients = list(self.server.get_clients().values())
        for c in clients:
            try:
                return np.asarray(c.camera.position, dtype=np.float64)
            except AssertionError:  # camera state not received yet
                continue
        return self.views[0].subject.cameras[int(self.g_cam.value)].center.numpy()

    # ------------------------------------------------------------------ updates
    def _on_split(self, _e=None) -> None:
        n = len(self.views[0].timeline(self.g_split.value))
        self.g_frame.max = max(1, n - 1)
        if self.g_frame.value > n - 1:
            self.g_frame.value = 0
        self._update_scene()

    def _reset_controls(self, _e=None) -> None:
        for h in self.g_controls.values():
            h.value = 0.0
        self._update_scene()

    def _update_scene(self) -> None:
        with self.lock:
            frames = self.current_frames()
            f0 = frames[0]
            self.g_info.content = (f"`{f0.sequence}` t={f0.timestep}" + (f", driver {f0.driver}" if f0.driver else "")
                                   + f" ({int(self.g_frame.value) + 1}/{int(self.g_frame.max) + 1})")
            client_mode = self.g_mode.value == MODES[0]
            center = self._view_center()
            for i, (v, f) in enumerate(zip(self.views, frames)):
                off = self.offsets[i]
                if client_mode:
                    sp = v.splats(f, center - off)
                    node = self.splat_nodes.get(i)
                    if node is None:
                        self.splat_nodes[i] = self.server.scene.add_gaussian_splats(
                            f"/runs/{i}/splats", sp.centers, sp.covariances, sp.rgbs, sp.opacities,
                            scale=1.0 / sp.scene_scale, position=tuple(off))
                    else:
                        node.set_gaussians(sp.centers, sp.covariances, sp.rgbs, sp.opacities)
                        node.visible = True
                elif i in self.splat_nodes:
                    self.splat_nodes[i].visible = False
                if self.g_mesh.value:
                    verts, faces = v.driving_mesh(f)
                    if i in self.mesh_nodes:
                        self.mesh_nodes[i].remove()
                    self.mesh_nodes[i] = self.server.scene.add_mesh_simple(
                        f"/runs/{i}/mesh", verts, faces, color=(90, 200, 255), wireframe=True, position=tuple(off))
                elif i in self.mesh_nodes:
                    self.mesh_nodes.pop(i).remove()
            if client_mode and self._server_images:
                self.server.scene.set_background_image(None)
                self._server_images = False
            self.frame_counter += 1
            if self.g_inspect.value:  # refreshed by the worker (it renders)
                self._inspect_pending = True
        self._dirty.set()

    def _update_inspect(self) -> None:
        with self.lock:
            for h in self.g_images:
                h.remove()
            self.g_images = []
            if not self.g_inspect.value:
                self.g_metrics.content = ""
                return
            split = self.g_split.value
            lines = []
            for v, f in zip(self.views, self.current_frames()):
                pred, _ = v.render(f)
                gt = v.ground_truth(f) if f.driver is None else None
                with self.server.gui.add_folder(f"run {v.label}") as folder:
                    self.g_images.append(folder)
                    self.server.gui.add_image(pred, label="render (dataset camera)")
                    if gt is not None:
                        self.server.gui.add_image(gt, label="ground truth")
                        self.server.gui.add_image(error_heatmap(pred, gt), label="|error| (0..0.25)")
                lines.append(f"- {v.label}: " + (v.metrics_text(split, f) if gt is not None
                                                else "no ground truth for this frame"))
            self.g_metrics.content = "\n".join(lines)

    def _snap(self, client) -> None:
        cam = self.views[0].subject.cameras[int(self.g_cam.value)]
        q, t = camera_pose_wxyz(cam)
        targets = [client] if client is not None else list(self.server.get_clients().values())
        for c in targets:
            with c.atomic():
                c.camera.fov = float(2 * np.arctan(0.5 * cam.height / cam.fy))
                c.camera.position = t
                c.camera.wxyz = q
        self._dirty.set()

    def _on_connect(self, client) -> None:
        client.camera.on_update(lambda _c: self._dirty.set())
        if len(self.views) > 1:  # the initial camera frames every run
            return
        try:
            self._snap(client)
        except Exception as e:  # noqa: BLE001
            self._report(e, client)

    def server_render(self, client) -> np.ndarray:
        """The composited benchmark render of every run for ``client``'s camera, (H, W, 3) uint8."""
        cam_state = client.camera
        cam = camera_from_view(cam_state.wxyz, cam_state.position, cam_state.fov, cam_state.aspect,
                               int(self.g_res.value))
        frames = self.current_frames()
        bg = np.asarray(self.views[0].subject.background, dtype=np.float32)
        out = np.broadcast_to(bg, (cam.height, cam.width, 3)).astype(np.float32)
        for i, (v, f) in enumerate(zip(self.views, frames)):
            c = camera_from_view(cam_state.wxyz, np.asarray(cam_state.position) - self.offsets[i], cam_state.fov,
                                 cam_state.aspect, int(self.g_res.value))
            rgb, alpha = v.render(replace(f, camera=c))
            rgb = rgb.astype(np.float32) / 255.0
            if alpha is None:
                out = rgb
                continue
            a = alpha[..., None]
            vbg = np.asarray(v.subject.background, dtype=np.float32)
            out = (rgb - (1 - a) * vbg) + (1 - a) * out
        return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)

    # ------------------------------------------------------------------ threads
    def _player(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            time.sleep(0.02)
            if not self.g_play.value:
                last = time.monotonic()
                continue
            if time.monotonic() - last < 1.0 / max(1, float(self.g_fps.value)):
                continue
            last = time.monotonic()
            try:
                n = int(self.g_frame.max) + 1
                self.g_frame.value = (int(self.g_frame.value) + 1) % n  # triggers _update_scene
            except Exception as e:  # noqa: BLE001
                self._report(e)

    def _worker(self) -> None:
        """Coalescing worker: view-dependent colours (SH) and server renders for the latest camera."""
        while not self._stop.is_set():
            self._dirty.wait()
            self._dirty.clear()
            if self._stop.is_set():
                return
            time.sleep(0.05)  # coalesce bursts of camera updates
            try:
                if self._inspect_pending:
                    self._inspect_pending = False
                    self._update_inspect()
                if self.g_mode.value == MODES[1]:
                    for client in list(self.server.get_clients().values()):
                        try:
                            img = self.server_render(client)
                        except AssertionError:  # camera not yet known
                            continue
                        client.scene.set_background_image(img, format="jpeg", jpeg_quality=90)
                        self._server_images = True
                elif any(v.view_dependent for v in self.views):
                    self._update_scene_colours()
            except Exception as e:  # noqa: BLE001
                self._report(e)

    def _update_scene_colours(self) -> None:
        with self.lock:
            center = self._view_center()
            for i, (v, f) in enumerate(zip(self.views, self.current_frames())):
                if i in self.splat_nodes:
                    sp = v.splats(f, center - self.offsets[i])
                    self.splat_nodes[i].rgbs = sp.rgbs


def serve(run_dirs, host: str = "127.0.0.1", port: int = 8080, log=print) -> ViewerApp:
    """Open the runs and start the app (returns it; the caller keeps the process alive)."""
    views = open_views(run_dirs)
    app = ViewerApp(views, host=host, port=port, log=log)
    url = app.start()
    log(f"avatarbench view: serving {len(views)} run(s) at {url} (Ctrl+C to stop)")
    return app


def open_views(run_dirs) -> list[RunView]:
    from avatarbench.errors import ConfigError

    if not run_dirs:
        raise ConfigError("view: give at least one run folder")
    views = [RunView.open(d) for d in run_dirs]
    kinds = {v.kind for v in views}
    if len(kinds) > 1:
        raise ConfigError(f"view: cannot compare head and body runs side by side ({', '.join(str(d) for d in run_dirs)})")
    return views


