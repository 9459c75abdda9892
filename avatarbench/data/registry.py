"""Format detection and dispatch: ``load_subject(path_or_name)`` for every dataset the suite reads.

Names (synthetic subjects, generated once into the cache):

- ``synth_head`` (= the default synthetic head), ``synth_head_a``, ``synth_head_b``
  -> :func:`avatarbench.data.synth.head.ensure_synthetic_head` -> a VHAP folder
- ``synth_body`` (= the default synthetic body), ``synth_body_a``, ``synth_body_b``
  -> :func:`avatarbench.data.synth.body.ensure_synthetic_body` -> a folder in one of the body formats
- any of these with a world suffix: ``synth_head_a_full``, ``synth_head_a_clean``,
  ``synth_body_b_long_hair``, ``synth_head_a_hair_volume+shoulders`` (see
  :mod:`avatarbench.data.synth.world`; the bare names use ``world.DEFAULT_WORLD``)

Folders, detected by the files they hold (checked in this order):

========================  ==============================================  ===========================================
format                    marker file(s)                                  loader
========================  ==============================================  ===========================================
``vhap``                  ``transforms_train.json`` or                    :func:`avatarbench.data.vhap.load_vhap`
                          ``canonical_flame_param.npz``
``avatarrex``             ``calibration_full.json``                       ``avatarbench.data.avatarrex.load_avatarrex``
``thuman4``               ``calibration.json``                            ``avatarbench.data.thuman4.load_thuman4``
``actorshq``              ``calibration.csv`` (or ``<N>x/calibration.csv``)  ``avatarbench.data.actorshq.load_actorshq``
``nersemble_benchmark``   ``calibration/camera_params.json`` (a           ``avatarbench.data.nersemble_benchmark.``
                          participant folder of the toolkit's download)   ``load_nersemble_benchmark``
========================  ==============================================  ===========================================

Loaders are imported lazily, so that a missing optional module only matters for its format.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Callable

from avatarbench.data.subject import Subject
from avatarbench.errors import DataError

SYNTHETIC_HEADS = ("synth_head", "synth_head_a", "synth_head_b")
SYNTHETIC_BODIES = ("synth_body", "synth_body_a", "synth_body_b")

#: format -> (marker files, "module:function")
FORMATS: dict[str, tuple[tuple[str, ...], str]] = {
    "vhap": (("transforms_train.json", "canonical_flame_param.npz"), "avatarbench.data.vhap:load_vhap"),
    "avatarrex": (("calibration_full.json",), "avatarbench.data.avatarrex:load_avatarrex"),
    "thuman4": (("calibration.json",), "avatarbench.data.thuman4:load_thuman4"),
    "actorshq": (("calibration.csv",), "avatarbench.data.actorshq:load_actorshq"),
    "nersemble_benchmark": (("calibration/camera_params.json",),
                            "avatarbench.data.nersemble_benchmark:load_nersemble_benchmark"),
}

_RES_DIR = re.compile(r"^\d+x$")  # ActorsHQ keeps calibration.csv in 1x/, 2x/, 4x/


def _import(target: str) -> Callable[..., Subject]:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def detect_format(path: str | Path) -> str:
    """The dataset format of a folder (see the module docstring), by its marker files.

    Raises:
        DataError: not a folder, or no marker file found (names the folder and the files looked for).
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(root, "folder not found", "a dataset folder or one of "
                        + ", ".join(SYNTHETIC_HEADS + SYNTHETIC_BODIES))
    for fmt, (markers, _) in FORMATS.items():
        if any((root / m).is_file() for m in markers):
            return fmt
    if any(p.is_dir() and _RES_DIR.match(p.name) and (p / "calibration.csv").is_file() for p in root.iterdir()):
        return "actorshq"
    looked = ", ".join(m for markers, _ in FORMATS.values() for m in markers)
    raise DataError(root, "no known dataset format", f"one of {looked} (or <N>x/calibration.csv) in the folder")


def synthetic_kind(name: str) -> str | None:
    """``head`` / ``body`` for a synthetic subject name (with or without a world suffix such as
    ``_full``, ``_clean``, ``_hair_volume``; see :mod:`avatarbench.data.synth.world`), else None."""
    from avatarbench.data.synth.world import split_world

    if split_world(name, SYNTHETIC_HEADS, "head") is not None:
        return "head"
    if split_world(name, SYNTHETIC_BODIES, "body") is not None:
        return "body"
    return None


def resolve_synthetic(name: str, **kw: Any) -> Path:
    """Generate (once, cached) the synthetic subject ``name`` and return its folder."""
    kind = synthetic_kind(name)
    if kind == "head" and name not in SYNTHETIC_HEADS:
        return Path(_import("avatarbench.data.synth.head:ensure_synthetic_head")(name, **kw))
    if kind == "body" and name not in SYNTHETIC_BODIES:
        return Path(_import("avatarbench.data.synth.body:ensure_synthetic_body")(name, **kw))
    if name in SYNTHETIC_HEADS:
        ensure = _import("avatarbench.data.synth.head:ensure_synthetic_head")
        return Path(ensure(**kw) if name == "synth_head" else ensure(name, **kw))
    if name in SYNTHETIC_BODIES:
        ensure = _import("avatarbench.data.synth.body:ensure_synthetic_body")
        return Path(ensure(**kw) if name == "synth_body" else ensure(name, **kw))
    raise DataError(name, "unknown synthetic subject", ", ".join(SYNTHETIC_HEADS + SYNTHETIC_BODIES))


def load_subject(path_or_name: str | Path, *, preset: str | None = None, **kw: Any) -> Subject:
    """Load a subject from a dataset folder or a synthetic subject name.

    Args:
        path_or_name: a folder (format detected, see module docstring) or a synthetic name. An
            existing folder wins over a name.
        preset: synthetic subjects only: the generator preset (e.g. ``"smoke"``); None = default.
        **kw: passed to the format's loader (e.g. ``scale=0.5``).
    Returns:
        the :class:`Subject`; ``meta["format"]`` names the format.
    Raises:
        DataError: unknown name / missing folder / undetectable format / bad data.
    """
    s = str(path_or_name)
    p = Path(path_or_name).expanduser()
    if p.is_file() and p.name in {m for markers, _ in FORMATS.values() for m in markers}:
        p = p.parent  # a marker file was given: load its folder
    synthetic = not p.exists() and synthetic_kind(s) is not None
    fmt = "synthetic" if synthetic else detect_format(p)
    if kw.get("protocol") is not None and fmt != "nersemble_benchmark":
        from avatarbench.errors import ConfigError

        raise ConfigError(f"data.protocol={kw['protocol']!r} applies to NeRSemble benchmark folders only "
                          f"({s} is {fmt})")
    if synthetic:
        p = resolve_synthetic(s, **({"preset": preset} if preset else {}))
        fmt = detect_format(p)
    kw = {k: v for k, v in kw.items() if not (k == "protocol" and v is None)}
    subject = _import(FORMATS[fmt][1])(p, **kw)
    subject.meta.setdefault("format", fmt)
    return subject


def inspect_subject(path_or_name: str | Path, **kw: Any) -> dict:
    """JSON-ready summary for ``avatarbench data inspect PATH --json``.

    Keys: ``name, kind, format, root, body_model, body_model_path, background, num_cameras,
    image_size [w, h], splits {split: {frames, timesteps, cameras, sequences}},
    cameras {id: {id, name, width, height, K (3x3), world_to_cam (4x4 OpenCV)}}, meta``.
    """
    subject = load_subject(path_or_name, **kw)
    out = subject.summary()
    out["format"] = subject.meta.get("format")
    return out
