"""Synthetic head subjects in the VHAP/NeRSemble format (the suite's embedded default dataset).

Two identities are generated together into one folder:

- ``synth_head_a`` (folder token ``synthA``): training sequences EMO-1, EMO-2, EXP-2, EXP-3 and
  the held-out ``FREE`` sequence (self-reenactment);
- ``synth_head_b`` (``synthB``): another shape, static offset, appearance and motion seed; a
  smaller training set and its own ``FREE`` sequence -- the cross-identity reenactment driver of
  A (and a subject of its own).

Ground truth: the synthetic FLAME stand-in (:mod:`avatarbench.bodymodels.flame_synthetic`, shipped
in ``body_model/`` of the dataset) posed with exactly the written parameters, rendered by the
independent mesh rasterizer (:mod:`avatarbench.data.synth.mesh_raster`) with the procedural
appearance (:mod:`avatarbench.data.synth.appearance`) from a 16-camera rig
(:mod:`avatarbench.data.synth.rig`). Nothing here uses the Gaussian renderer.

Dataset folder (``cache_dir()/synthetic/v<GENERATOR_VERSION>/<preset>[_seed<k>]/``)::

    body_model/flame_synthetic.pkl, FLAME_masks.pkl
    synthA_EMO-1_v16_DS4_whiteBg_synthetic/ ...       (see vhap_writer)
    UNION_synthA_EMO12EXP23FREE_v16_DS4_whiteBg_synthetic/
    synthB_.../, UNION_synthB_..._v16_DS4_whiteBg_synthetic/
    COMPLETE.json
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from avatarbench.data.synth.world import World, dataset_card
from avatarbench.data.synth.motion import (
    FREE_SEQUENCE,
    TRAIN_SEQUENCES,
    ExpressionUnits,
    make_identity_shape,
    make_sequence,
    relocate,
)

GENERATOR_VERSION = 2  # 2: official teeth triangles, stand-in lip rings in FLAME's direction
#: version of the phenomena generators (worlds other than ``clean``; the clean world is frozen)
WORLD_VERSION = 1
FLAME_STANDIN_SEED = 0
BODY_MODEL_DIR = "body_model"
COMPLETE_FILE = "COMPLETE.json"


@dataclass(frozen=True)
class IdentitySpec:
    """One synthetic person.

    Attributes:
        name: subject name used by the suite (``synth_head_a``).
        token: VHAP subject token of the folder names (no underscores).
        index: identity number (mixes into every seed; palette variant of the appearance).
        head_position: (3,) mean FLAME translation in the capture world (before relocation).
    """

    name: str
    token: str
    index: int
    head_position: tuple[float, float, float]


IDENTITIES: dict[str, IdentitySpec] = {
    "synth_head_a": IdentitySpec("synth_head_a", "synthA", 0, (0.004, 0.031, -0.006)),
    "synth_head_b": IdentitySpec("synth_head_b", "synthB", 1, (-0.005, 0.038, 0.004)),
}


@dataclass(frozen=True)
class SynthPreset:
    """Size of a generated dataset.

    Attributes:
        scale: image scale relative to NeRSemble/VHAP's 550 x 802.
        supersample: s (s x s samples per pixel).
        sequences: identity name -> ((sequence, timesteps), ...); the last entry of each is the
            held-out (test) sequence.
    """

    name: str
    scale: float
    supersample: int
    sequences: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)

    @property
    def downsample_token(self) -> str:
        return f"DS{round(1 / self.scale)}" if self.scale <= 1 else f"US{round(self.scale)}"


def _plan(train: tuple[str, ...], t_train: int, t_free: int) -> tuple[tuple[str, int], ...]:
    return tuple((s, t_train) for s in train) + ((FREE_SEQUENCE, t_free),)


PRESETS: dict[str, SynthPreset] = {
    # the default run / tests: 138 x 200, ~1100 images
    "smoke": SynthPreset("smoke", 0.25, 3, {
        "synth_head_a": _plan(TRAIN_SEQUENCES, 10, 10),
        "synth_head_b": _plan(("EMO-1", "EXP-2"), 5, 10),
    }),
    # paper-like: full 550 x 802, many more timesteps (hours on a CPU; not used in tests)
    "full": SynthPreset("full", 1.0, 3, {
        "synth_head_a": _plan(TRAIN_SEQUENCES, 60, 60),
        "synth_head_b": _plan(TRAIN_SEQUENCES, 30, 60),
    }),
    # unit tests: 69 x 100, a handful of timesteps
    "tiny": SynthPreset("tiny", 0.125, 2, {
        "synth_head_a": _plan(("EMO-1", "EXP-2"), 2, 2),
        "synth_head_b": _plan(("EMO-1",), 2, 2),
    }),
}


def get_preset(preset: str | SynthPreset) -> SynthPreset:
    if isinstance(preset, SynthPreset):
        return preset
    if preset not in PRESETS:
        from avatarbench.errors import ConfigError

        raise ConfigError(f"unknown synthetic head preset {preset!r} (known: {', '.join(PRESETS)})")
    return PRESETS[preset]


def sequence_folder_name(token: str, seq: str, preset: SynthPreset) -> str:
    return f"{token}_{seq}_v16_{preset.downsample_token}_whiteBg_synthetic"


def _sequence_code(seqs: list[str]) -> str:
    """``[EMO-1, EMO-2, EXP-2, EXP-3, FREE]`` -> ``EMO12EXP23FREE`` (VHAP UNION naming)."""
    groups: dict[str, str] = {}
    for s in seqs:
        head, _, num = s.partition("-")
        groups[head] = groups.get(head, "") + num
    return "".join(h + n for h, n in groups.items())


def union_folder_name(token: str, seqs: list[str], preset: SynthPreset) -> str:
    return f"UNION_{token}_{_sequence_code(seqs)}_v16_{preset.downsample_token}_whiteBg_synthetic"


# --------------------------------------------------------------------------- identity geometry
def _static_offset(model, canonical: torch.Tensor, seed: int) -> np.ndarray:
    """(1, V, 3) small smooth per-vertex offsets (<= ~1.5 mm along the normal; none on eyes/teeth)."""
    from avatarbench.data.synth.mesh_raster import vertex_normals

    rng = np.random.default_rng([seed, 99])
    v = canonical.numpy().astype(np.float64)
    n = vertex_normals(canonical, model.faces).numpy().astype(np.float64)
    frozen = np.zeros(v.shape[0], bool)
    for key in ("left_eyeball", "right_eyeball", "teeth"):
        if key in model.masks:
            frozen[model.masks[key]] = True
    free = np.nonzero(~frozen & (v[:, 2] > -0.02))[0]
    field_ = np.zeros(v.shape[0])
    for _ in range(8):
        c = v[free[rng.integers(len(free))]]
        r = rng.uniform(0.012, 0.03)
        field_ += rng.uniform(-0.0015, 0.0015) * np.exp(-0.5 * np.sum((v - c) ** 2, 1) / r ** 2)
    field_[frozen] = 0.0
    return (field_[:, None] * n)[None].astype(np.float32)


@dataclass
class _Identity:
    spec: IdentitySpec
    seed: int
    shape: np.ndarray  # (300,)
    static_offset: np.ndarray  # (1, V, 3)
    appearance: object
    canonical: np.ndarray | None = None  # (V, 3) rest vertices (shape + static offset)


def _build_identity(model, spec: IdentitySpec, seed: int, texture_size) -> _Identity:
    from avatarbench.data.synth.appearance import HeadAppearance

    id_seed = int(seed) * 1000 + spec.index
    shape = make_identity_shape(id_seed, n_shape=300)
    with torch.no_grad():
        canon0 = model.forward(shape=torch.from_numpy(shape)[None]).verts[0]
        offset = _static_offset(model, canon0, id_seed)
        canon = model.forward(shape=torch.from_numpy(shape)[None], static_offset=torch.from_numpy(offset)).verts[0]
    app = HeadAppearance(canon.numpy(), model.faces.numpy(), model.masks, seed=id_seed, variant=spec.index,
                         texture_size=texture_size)
    return _Identity(spec, id_seed, shape, offset, app, canon.numpy().astype(np.float64))


# --------------------------------------------------------------------------- generation
def _render_sequence(folder: Path, model, ident: _Identity, seq: str, T: int, cameras, preset: SynthPreset,
                     units: ExpressionUnits, world=None, scene=None) -> Path:
    from avatarbench.data.synth.mesh_raster import render_mesh, vertex_normals
    from avatarbench.data.synth.vhap_writer import SequenceWriter, to_uint8

    motion = make_sequence(seq, T, ident.seed, units, head_position=ident.spec.head_position)
    params, M = relocate(motion.params)
    if world is not None and not world.is_clean:
        return _render_sequence_world(folder, model, ident, seq, T, cameras, preset, params, M, world, scene)
    writer = SequenceWriter(folder, cameras, M, model.faces.numpy())
    faces = model.faces
    with torch.no_grad():
        out = model.forward(shape=torch.from_numpy(ident.shape)[None], expr=torch.from_numpy(params["expr"]),
                            rotation=torch.from_numpy(params["rotation"]),
                            neck_pose=torch.from_numpy(params["neck_pose"]),
                            jaw_pose=torch.from_numpy(params["jaw_pose"]),
                            eyes_pose=torch.from_numpy(params["eyes_pose"]),
                            translation=torch.from_numpy(params["translation"]),
                            static_offset=torch.from_numpy(ident.static_offset))
        verts = out.verts  # (T, V, 3)
        for ti in range(T):
            v = verts[ti]
            vn = vertex_normals(v, faces)
            renders = []
            for cam in writer.cameras:
                rgb, alpha = render_mesh(v, faces, cam, ident.appearance.shade, preset.supersample,
                                         vertex_attrs=ident.appearance.vertex_attrs, normals=vn)
                renders.append((to_uint8(rgb), to_uint8(alpha[..., 0])))
            flame = {k: params[k][ti:ti + 1] for k in ("translation", "rotation", "neck_pose", "jaw_pose",
                                                         "eyes_pose", "expr")}
            flame["shape"] = ident.shape
            flame["static_offset"] = ident.static_offset
            writer.write_timestep(ti, flame, v.numpy(), renders)
    return writer.finish()


def _sequence_rng(ident: _Identity, seq: str, salt: int) -> np.random.Generator:
    return np.random.default_rng([ident.seed, sum(ord(c) * 31 ** i for i, c in enumerate(seq)) % (2 ** 31), salt])


def _render_sequence_world(folder: Path, model, ident: _Identity, seq: str, T: int, cameras, preset: SynthPreset,
                           params: dict, M: np.ndarray, world, scene) -> Path:
    """:func:`_render_sequence` with phenomena (see :mod:`avatarbench.data.synth.head_phenomena`).

    Writes the tracker's parameters to ``flame_param/`` (the truth when ``tracking_noise`` is off),
    the true ones to ``flame_param_true/`` (read by no loader), and ``avatarbench_world.json`` (the
    measured tracking error and the generation time of the folder).
    """
    from scipy.spatial.transform import Rotation

    from avatarbench.data.synth.head_phenomena import mesh_difference, track_flame_params, track_identity
    from avatarbench.data.synth.mesh_raster import render_mesh, vertex_normals
    from avatarbench.data.synth.vhap_writer import FLAME_NPZ_KEYS, SequenceWriter, to_uint8

    t0 = time.perf_counter()
    keys = ("translation", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "expr")
    tracked, shape_t, offset_t = params, ident.shape, ident.static_offset
    if world.has("tracking_noise"):
        tracked = track_flame_params(params, _sequence_rng(ident, seq, 777))
        shape_t, offset_t = track_identity(ident.shape, ident.static_offset, np.random.default_rng([ident.seed, 555]))
    writer = SequenceWriter(folder, cameras, M, scene.faces.numpy())
    (folder / "flame_param_true").mkdir(parents=True, exist_ok=True)

    def flame_forward(p, shape, offset):
        return model.forward(shape=torch.from_numpy(shape)[None], static_offset=torch.from_numpy(offset),
                             **{k: torch.from_numpy(p[k]) for k in keys})

    record: dict = {"world": world.tag}
    with torch.no_grad():
        out = flame_forward(params, ident.shape, ident.static_offset)
        if world.has("tracking_noise"):
            out_t = flame_forward(tracked, shape_t, offset_t)
            record["tracking_error"] = mesh_difference(out_t.verts, out.verts, writer.cameras)
        R_head = Rotation.from_matrix(out.A[:, 1, :3, :3].double().numpy())
        for ti in range(T):
            omega = None
            if ti > 0:  # head rotation change since the previous timestep, in the head's rest frame
                d = (R_head[ti] * R_head[ti - 1].inv()).as_rotvec()
                omega = R_head[ti].inv().apply(d)
            v = scene.verts(out.verts[ti], out.A[ti], params["expr"][ti], omega)
            vn = vertex_normals(v, scene.faces)
            shade = scene.shader(params["expr"][ti])
            renders = []
            for cam in writer.cameras:
                rgb, alpha = render_mesh(v, scene.faces, cam, shade, preset.supersample,
                                         vertex_attrs=scene.vertex_attrs, normals=vn)
                renders.append((to_uint8(rgb), to_uint8(alpha[..., 0])))
            flame = {k: tracked[k][ti:ti + 1] for k in keys}
            flame["shape"] = shape_t
            flame["static_offset"] = offset_t
            writer.write_timestep(ti, flame, v.numpy(), renders)
            true = {k: params[k][ti:ti + 1] for k in keys}
            true["shape"] = ident.shape
            true["static_offset"] = ident.static_offset
            np.savez(folder / "flame_param_true" / f"{ti:05d}.npz", **{k: true[k] for k in FLAME_NPZ_KEYS})
    folder = writer.finish()
    (folder / WORLD_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    # the only non-deterministic file: wall-clock seconds of this folder
    (folder / TIME_RECORD).write_text(json.dumps({"generation_seconds": round(time.perf_counter() - t0, 3)}) + "\n")
    return folder


WORLD_RECORD = "avatarbench_world.json"
TIME_RECORD = "generation_time.json"
_WORKER_CACHE: dict = {}


def _sequence_job(out_dir: str, preset: SynthPreset, seed: int, name: str, seq: str, T: int,
                  flame_path: str, texture_size: tuple[int, int], world_tag: str = "clean") -> str:
    """Render and write one sequence folder (runs in a worker process or in-process).

    Uses one torch thread so that the bytes written do not depend on the thread count and the
    job does not oversubscribe a busy machine; restores the previous setting.
    """
    from avatarbench.bodymodels.flame import load_flame
    from avatarbench.data.synth.rig import CaptureRig

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if _WORKER_CACHE.get("flame_path") != flame_path:
            _WORKER_CACHE.clear()
            _WORKER_CACHE["flame_path"] = flame_path
            _WORKER_CACHE["model"] = load_flame(flame_path, teeth=True)
        model = _WORKER_CACHE["model"]
        key = (name, seed, tuple(texture_size))
        if key not in _WORKER_CACHE:
            _WORKER_CACHE[key] = _build_identity(model, IDENTITIES[name], seed, texture_size)
        ident = _WORKER_CACHE[key]
        units = ExpressionUnits.from_model(model)
        cameras = CaptureRig(scale=preset.scale, target=(0.0, 0.0, 0.0)).cameras()
        folder = Path(out_dir) / sequence_folder_name(IDENTITIES[name].token, seq, preset)
        world = World.parse("head", world_tag)
        scene = None
        if not world.is_clean:
            from avatarbench.data.synth.head_phenomena import HeadScene

            skey = key + (world.tag,)
            if skey not in _WORKER_CACHE:
                _WORKER_CACHE[skey] = HeadScene(model, ident.canonical, ident.appearance, world,
                                                IDENTITIES[name].index)
            scene = _WORKER_CACHE[skey]
        _render_sequence(folder, model, ident, seq, T, cameras, preset, units, world, scene)
        return str(folder)
    finally:
        torch.set_num_threads(prev)


def _default_workers(p: SynthPreset) -> int:
    images = 16 * sum(T for plan in p.sequences.values() for _, T in plan)
    return 1 if images < 400 else max(1, min(2, os.cpu_count() or 1))


def generate_synthetic_heads(out_dir: str | Path, preset: str | SynthPreset = "smoke", seed: int = 0, *,
                             workers: int | None = None, verbose: bool = False,
                             world: World | str = "clean") -> dict[str, Path]:
    """Write both synthetic identities into ``out_dir`` (no caching, no atomic rename).

    Args:
        out_dir: dataset folder (created).
        preset: a name of :data:`PRESETS` or a :class:`SynthPreset`.
        seed: dataset seed (shapes, offsets, appearance, motion); same seed -> same PNG bytes
            (independent of ``workers``).
        workers: processes rendering sequences in parallel (forked on Linux, spawned elsewhere);
            None = 2 for presets with 400+ images (when 2 CPUs are available), else 1 (in-process).
        verbose: print progress.
        world: the phenomena (:class:`~avatarbench.data.synth.world.World` or its tag: ``clean``,
            ``full``, ``hair_volume``, ...). ``clean`` writes exactly the pre-issue-12 bytes.

    Returns:
        identity name -> its UNION folder.
    """
    from avatarbench.bodymodels.flame_synthetic import write_synthetic_flame
    from avatarbench.data.synth.vhap_writer import write_union

    t0 = time.time()
    world = world if isinstance(world, World) else World.parse("head", world)
    p = get_preset(preset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    flame_path = write_synthetic_flame(out / BODY_MODEL_DIR, seed=FLAME_STANDIN_SEED)
    tex = (512, 1024) if p.scale <= 0.25 else (1024, 2048)
    jobs = [(str(out), p, int(seed), name, seq, int(T), str(flame_path), tex) + ((world.tag,) if not world.is_clean else ())
            for name, plan in p.sequences.items() for seq, T in plan]
    workers = _default_workers(p) if workers is None else max(1, int(workers))

    def report(job, folder):
        if verbose:
            print(f"[synth] {Path(folder).name}: {job[5]} timesteps x 16 cameras ({time.time() - t0:.1f} s)")

    if workers == 1:
        for job in jobs:
            report(job, _sequence_job(*job))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # fork on Linux: no re-import of the caller's __main__ (spawn would re-run unguarded scripts)
        # and no start-up cost; each job runs with one torch thread, as DataLoader workers do.
        # Elsewhere spawn (the caller's script then needs an ``if __name__ == "__main__"`` guard).
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        order = sorted(jobs, key=lambda j: (j[3], -j[5]))  # identities grouped: built once per worker
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
            futs = {ex.submit(_sequence_job, *job): job for job in order}
            for fut in as_completed(futs):
                report(futs[fut], fut.result())

    unions: dict[str, Path] = {}
    measured: dict[str, dict] = {}
    for name, plan in p.sequences.items():
        spec = IDENTITIES[name]
        seqs = [s for s, _ in plan]
        folders = [out / sequence_folder_name(spec.token, s, p) for s in seqs]
        union = out / union_folder_name(spec.token, seqs, p)
        info = {
            "format": "vhap",
            "name": name,
            "dataset": "synthetic_head",
            "synthetic": True,
            "body_model": "flame",
            "body_model_path": f"../{BODY_MODEL_DIR}/{flame_path.name}",
            "seed": int(seed),
            "identity_seed": int(seed) * 1000 + spec.index,
            "generator_version": GENERATOR_VERSION,
            "preset": p.name,
            "scale": p.scale,
            "supersample": p.supersample,
            "sequences_trainval": seqs[:-1],
            "sequences_test": seqs[-1:],
            "gt_mesh": "per-frame gt_mesh_path: (V,3) float32 world vertices; faces: <seq>/gt_mesh/faces.npy",
            "drivers": {o: f"../{union_folder_name(IDENTITIES[o].token, [s for s, _ in pl], p)}"
                        for o, pl in p.sequences.items() if o != name},
        }
        if not world.is_clean:
            info["name"] = f"{name}_{world.tag}"
            info["world"] = world.metadata()
            m = _world_measurements(folders)
            info["world"]["measured"] = m
            measured[info["name"]] = {k: v for k, v in m.items() if k != "per_sequence"}
        write_union(union, folders[:-1], folders[-1:], info)
        unions[name] = union
    names = [f"{n}_{world.tag}" if not world.is_clean else n for n in p.sequences]
    (out / CARD_FILE).write_text(dataset_card("head", world, names, measured))
    if not world.is_clean:
        secs = {f.name: json.loads((f / TIME_RECORD).read_text())["generation_seconds"]
                for f in sorted(out.glob("*_synthetic")) if (f / TIME_RECORD).is_file()}
        (out / TIME_RECORD).write_text(json.dumps({"total_seconds": round(sum(secs.values()), 2),
                                                   "per_sequence": secs}, indent=1) + "\n")
    if verbose:
        print(f"[synth] done in {time.time() - t0:.1f} s -> {out}")
    return unions


CARD_FILE = "DATASET_CARD.md"


def _world_measurements(folders: list[Path]) -> dict:
    """Aggregate the sequences' ``avatarbench_world.json``: tracking error (mean of the per-sequence
    means, max of the maxima)."""
    recs = {f.name: json.loads((f / WORLD_RECORD).read_text()) for f in folders if (f / WORLD_RECORD).is_file()}
    out: dict = {}
    te = [r["tracking_error"] for r in recs.values() if "tracking_error" in r]
    if te:
        out["tracking_error_mesh_mm_mean"] = round(float(np.mean([t["mesh_mm_mean"] for t in te])), 3)
        out["tracking_error_mesh_mm_max"] = round(float(np.max([t["mesh_mm_max"] for t in te])), 3)
        out["tracking_error_pixels_mean"] = round(float(np.mean([t["pixels_mean"] for t in te])), 3)
    out["per_sequence"] = recs
    return out


def dataset_dir(preset: str | SynthPreset = "smoke", seed: int = 0, root: str | Path | None = None,
                world: World | str = "clean") -> Path:
    """Where :func:`ensure_synthetic_head` keeps a preset: ``<root>/<preset>[_seed<k>][_<world>]``
    (no world suffix for ``clean``), with root = ``cache_dir()/synthetic/v<GENERATOR_VERSION>`` by default."""
    from avatarbench.paths import cache_dir

    p = get_preset(preset)
    w = world if isinstance(world, World) else World.parse("head", world)
    base = Path(root) if root is not None else cache_dir() / "synthetic" / f"v{GENERATOR_VERSION}"
    name = p.name if seed == 0 else f"{p.name}_seed{seed}"
    return base / (name if w.is_clean else f"{name}_{w.tag}")


def _is_complete(folder: Path, p: SynthPreset, seed: int, world_tag: str = "clean") -> bool:
    marker = folder / COMPLETE_FILE
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return (info.get("generator_version") == GENERATOR_VERSION and info.get("seed") == seed
            and info.get("preset") == _preset_json(p) and info.get("world", "clean") == world_tag
            and info.get("world_version", WORLD_VERSION) == WORLD_VERSION)


def _preset_json(p: SynthPreset) -> dict:
    return asdict(p) | {"sequences": {k: [list(x) for x in v] for k, v in p.sequences.items()}}


def ensure_synthetic_head(name: str = "synth_head_a", preset: str | SynthPreset = "smoke", seed: int = 0,
                          root: str | Path | None = None, world: World | str | None = None) -> Path:
    """The UNION folder of a synthetic head subject, generating the dataset once if needed.

    Both identities are generated together (into a temporary sibling folder renamed atomically
    when complete, so an interrupted run never leaves a half dataset); later calls reuse it.

    Args:
        name: ``synth_head_a`` (default; also ``synth_head``) or ``synth_head_b``, optionally with a
            world suffix (``synth_head_a_full``, ``synth_head_b_clean``, ``synth_head_a_hair_volume``;
            see :mod:`avatarbench.data.synth.world`); a bare name = ``world.DEFAULT_WORLD``.
        preset: ``smoke`` (default), ``full``, ``tiny`` or a :class:`SynthPreset`.
        seed: dataset seed.
        root: parent folder of the presets; None = ``cache_dir()/synthetic/v<version>``.
        world: overrides the name's world suffix (a World or a tag).
    """
    from avatarbench.data.synth.world import split_world

    parsed = split_world(name, ("synth_head", *IDENTITIES), "head")
    if parsed is not None:
        name, w = parsed
        world = w if world is None else world
    world = World.parse("head", None) if world is None else world
    world = world if isinstance(world, World) else World.parse("head", world)
    if name == "synth_head":
        name = "synth_head_a"
    if name not in IDENTITIES:
        from avatarbench.errors import ConfigError

        raise ConfigError(f"unknown synthetic head {name!r} (known: {', '.join(IDENTITIES)})")
    p = get_preset(preset)
    if name not in p.sequences:
        from avatarbench.errors import ConfigError

        raise ConfigError(f"preset {p.name!r} has no identity {name!r}")
    final = dataset_dir(p, seed, root, world)
    seqs = [s for s, _ in p.sequences[name]]
    union = final / union_folder_name(IDENTITIES[name].token, seqs, p)
    if _is_complete(final, p, seed, world.tag) and union.is_dir():
        return union
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # stale (other version/preset definition) or damaged: replace it
        shutil.rmtree(final)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        from avatarbench.data.synth.progress import generation_progress
        from avatarbench.data.synth.rig import NUM_CAMERAS

        n_t = sum(T for plan in p.sequences.values() for _, T in plan)
        with generation_progress(tmp, "*/images/*.png", NUM_CAMERAS * n_t,
                                 f"synthetic head subjects ({NUM_CAMERAS} cameras x {n_t} timesteps)", final):
            generate_synthetic_heads(tmp, p, seed, world=world)
        marker = {"generator_version": GENERATOR_VERSION, "seed": seed, "preset": _preset_json(p)}
        if not world.is_clean:
            marker |= {"world": world.tag, "world_version": WORLD_VERSION}
        (tmp / COMPLETE_FILE).write_text(json.dumps(marker, indent=2) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:
            if not _is_complete(final, p, seed, world.tag):  # not a concurrent winner: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return union
