"""``avatarbench view --export out.html``: a self-contained HTML page with the splat sequence.

The runs' client-side splats for every timestep of a split are recorded with viser's scene
serializer (one ``set_gaussians`` per timestep, ``1 / fps`` apart) and written with
``as_html()``: the page embeds viser's web client and the recording and opens from disk.
Colours are evaluated for the chosen dataset camera (SH methods are view-dependent).
"""

from __future__ import annotations

from pathlib import Path

from avatarbench.errors import ConfigError
from avatarbench.viewer.runs import RunView


def export_html(views: list[RunView], out: Path, *, split: str = "self_reenact", camera_id: int | None = None,
                max_frames: int = 60, fps: float = 10.0, port: int = 8090) -> Path:
    """Write the HTML file; returns its path. Every run must be showable client-side.

    Raises:
        ConfigError: a run's method has no client-side splats (e.g. gaussian_head_avatar).
    """
    import viser

    from avatarbench.viewer.app import configure_initial_camera, run_offsets, scene_up

    bad = [v.label for v in views if not v.client_side]
    if bad:
        raise ConfigError(f"--export needs client-side splats; {', '.join(bad)} renders through a network "
                          "(view it live with `avatarbench view` instead)")
    v0 = views[0]
    if split not in v0.timeline_names():
        raise ConfigError(f"--split {split}: not a timeline of {v0.label} (has: {', '.join(v0.timeline_names())})")
    cam_id = sorted(v0.subject.cameras)[0] if camera_id is None else int(camera_id)
    if cam_id not in v0.subject.cameras:
        raise ConfigError(f"--camera {cam_id}: no such camera (has: {', '.join(map(str, sorted(v0.subject.cameras)))})")
    cam = v0.subject.cameras[cam_id]
    center = cam.center.numpy()
    offsets = run_offsets(views)
    n = min(int(max_frames), len(v0.timeline(split)))
    server = viser.ViserServer(host="127.0.0.1", port=port, verbose=False)
    try:
        server.scene.set_up_direction(tuple(float(u) for u in scene_up(views)))
        configure_initial_camera(server, cam, views, offsets)
        nodes = []
        for i, v in enumerate(views):
            sp = v.splats(v.frame(split, 0, cam_id), center - offsets[i])
            nodes.append(server.scene.add_gaussian_splats(
                f"/runs/{i}/splats", sp.centers, sp.covariances, sp.rgbs, sp.opacities,
                scale=1.0 / sp.scene_scale, position=tuple(offsets[i])))
        serializer = server.get_scene_serializer()
        for k in range(n):
            for i, v in enumerate(views):
                sp = v.splats(v.frame(split, k, cam_id), center - offsets[i])
                nodes[i].set_gaussians(sp.centers, sp.covariances, sp.rgbs, sp.opacities)
            serializer.insert_sleep(1.0 / float(fps))
        html = serializer.as_html()
    finally:
        server.stop()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(html)
    tmp.replace(out)
    return out
