"""The compiled CPU backend: a C++ tile compositor (``csrc/raster_cpu.cpp``) behind the torch pipeline.

Projection (``projection.py``, autograd), SH (``sh.py``) and tile binning (``tiles.py``) are the
torch backend's; only the compositing -- forward and hand-written backward, where the time goes --
is compiled. The source has a plain C ABI and no torch headers, so it is compiled on first use
with the system C++ compiler (``$CXX``, default ``c++``) in a few seconds -- against ~2 minutes
for a ``torch.utils.cpp_extension`` build of the same kernel on the 2-core dev box -- and loaded
with ``ctypes``. The library lives in ``<cache_dir>/compiled/``, named by a hash of the source,
the compiler flags and the CPU's flags, so it compiles once per machine.

When it cannot be built (no compiler, ``AVATARBENCH_NO_COMPILE=1``, a failing build), :func:`load`
prints one line saying why and returns None; ``rasterize(backend="auto")`` then uses the torch
backend. See docs/renderer.md.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from ._torch_backend import pin_one_thread, single_thread
from .tiles import TileBins

_SOURCE = Path(__file__).parent / "csrc" / "raster_cpu.cpp"
_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-std=c++17", "-shared", "-fPIC", "-pthread"]
_ABI_VERSION = 1
_state: dict = {}


def _cpu_fingerprint() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    import platform

    return platform.processor() + platform.machine()


def build_dir() -> Path:
    """Where the compiled library is cached (under avatarbench's cache dir)."""
    from avatarbench.paths import cache_dir

    return cache_dir() / "compiled"


def _compile(cxx: list[str], out: Path) -> None:
    """Compile the source into ``out`` atomically (temp file + rename, so parallel runs are safe)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        flags = list(_FLAGS)
        for attempt in (0, 1):
            cmd = [*cxx, *flags, str(_SOURCE), "-o", tmp]
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            except FileNotFoundError:
                raise RuntimeError(f"C++ compiler {cxx[0]!r} not found (set CXX)") from None
            if res.returncode == 0:
                break
            if attempt == 0 and "-march=native" in flags:  # some compilers/CPUs reject it: retry portable
                flags.remove("-march=native")
                continue
            err = [ln for ln in (res.stderr or res.stdout).splitlines() if ln.strip()]
            first = next((ln for ln in err if "error" in ln.lower()), err[0] if err else "no output")
            raise RuntimeError(f"{' '.join(cmd[:1])} failed (exit {res.returncode}): {first.strip()[:200]}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _bind(lib) -> None:
    p, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    fwd = [p] * 8 + [i64] + [i32] * 8 + [p] * 3
    bwd = [p] * 8 + [i64, i64] + [i32] * 6 + [p] * 4 + [i32, i32] + [p] * 2
    for name, args in (("rc_forward_f32", fwd), ("rc_forward_f64", fwd), ("rc_backward_f32", bwd),
                       ("rc_backward_f64", bwd)):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, None
    lib.rc_count_evals.argtypes, lib.rc_count_evals.restype = [p] * 6 + [i64] + [i32] * 5 + [p], None
    for sfx in ("f32", "f64"):
        getattr(lib, "rc_bin_count_" + sfx).argtypes = [p, p, i64, i64, i32, i32, i32, p]
        getattr(lib, "rc_bin_fill_" + sfx).argtypes = [p, p, p, i64, i64, i32, i32, i32, p, p, i64, p, p, p]
    lib.rc_abi_version.restype = ctypes.c_int
    if lib.rc_abi_version() != _ABI_VERSION:
        raise RuntimeError(f"library ABI {lib.rc_abi_version()} != {_ABI_VERSION}")


def load():
    """The compiled library (ctypes), or None -- after printing one line why -- when it is unavailable.

    Compiles on the first call on a machine; the result is cached for the process.
    """
    if "lib" in _state:
        return _state["lib"]
    lib, reason = None, None
    if os.environ.get("AVATARBENCH_NO_COMPILE", "") not in ("", "0"):
        reason = "AVATARBENCH_NO_COMPILE is set"
    else:
        try:
            cxx = shlex.split(os.environ.get("CXX") or "c++")
            key = hashlib.sha1(_SOURCE.read_bytes() + " ".join(cxx + _FLAGS).encode()
                               + _cpu_fingerprint().encode()).hexdigest()[:16]
            path = build_dir() / f"raster_cpu_{key}.so"
            if not path.exists():
                _compile(cxx, path)
                for old in path.parent.glob("raster_cpu_*.so"):  # builds of older sources (unlinking
                    if old != path:  # a library another process has loaded is safe on POSIX)
                        old.unlink(missing_ok=True)
            lib = ctypes.CDLL(str(path))
            _bind(lib)
        except Exception as exc:  # noqa: BLE001 -- any build/load failure means: fall back
            lib, reason = None, f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    if lib is None:
        print(f"avatarbench.render: compiled CPU rasterizer unavailable ({reason}); using the torch backend",
              file=sys.stderr, flush=True)
    _state["lib"] = lib
    _state["reason"] = reason
    return lib


def available() -> bool:
    """Whether the compiled backend can be used (compiles it on the first call)."""
    return load() is not None


def _ptr(t: Tensor | None):
    return None if t is None or t.numel() == 0 else ctypes.c_void_p(t.data_ptr())


def _suffix(dtype: torch.dtype) -> str:
    if dtype == torch.float32:
        return "f32"
    if dtype == torch.float64:
        return "f64"
    raise ValueError(f"rasterize: backend='cpp' supports float32/float64, got {dtype}")


class RasterizeTilesCpp(torch.autograd.Function):
    """Alpha compositing of binned Gaussians in C++; same signature as the torch ``_RasterizeTiles``.

    forward(means2d (I,N,2), conics (I,N,3), colors (I,N,D), opacities (I,N), backgrounds (I,D)
    or None, bins, width, height, absgrad, block (unused)) -> (colors (I,H,W,D), alphas (I,H,W,1)).
    """

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, backgrounds, bins: TileBins, width, height, absgrad, block):
        lib = load()
        ctx.threads = _state.get("threads") or torch.get_num_threads()
        I, N, D = colors.shape
        m2d = means2d.detach().reshape(I * N, 2).contiguous()
        con = conics.detach().reshape(I * N, 3).contiguous()
        col = colors.detach().reshape(I * N, D).contiguous()
        op = opacities.detach().reshape(I * N).contiguous()
        bg = backgrounds.detach().contiguous() if backgrounds is not None else None
        out = col.new_empty(I, height, width, D)
        tfin = col.new_empty(I, height, width)
        last = torch.empty(I, height, width, dtype=torch.int32)
        getattr(lib, "rc_forward_" + _suffix(col.dtype))(
            _ptr(m2d), _ptr(con), _ptr(col), _ptr(op), _ptr(bg), _ptr(bins.flat_ids), _ptr(bins.slot_tiles),
            _ptr(bins.slot_offsets), bins.slot_tiles.numel(), I, D, width, height, bins.tile_size, bins.tiles_x,
            bins.tiles_y, ctx.threads, _ptr(out), _ptr(tfin), _ptr(last))
        ctx.save_for_backward(means2d, conics, colors, opacities, backgrounds, tfin, last)
        ctx.bins, ctx.absgrad, ctx.size = bins, absgrad, (width, height)
        return out, (1.0 - tfin).unsqueeze(-1)

    @staticmethod
    def backward(ctx, v_out, v_alphas):
        with single_thread():  # the torch glue here; the kernel uses ctx.threads threads of its own
            grads = RasterizeTilesCpp._backward(ctx, v_out, v_alphas)
        pin_one_thread()  # the projection backward that follows runs on one thread
        return grads

    @staticmethod
    def _backward(ctx, v_out, v_alphas):
        lib = load()
        means2d, conics, colors, opacities, backgrounds, tfin, last = ctx.saved_tensors
        bins: TileBins = ctx.bins
        width, height = ctx.size
        I, N, D = colors.shape
        dtype = colors.dtype
        if v_out is None:
            v_out = colors.new_zeros(I, height, width, D)
        v_out = v_out.to(dtype).contiguous()
        va = v_alphas[..., 0].to(dtype).contiguous() if v_alphas is not None else None
        bg = backgrounds.detach().contiguous() if backgrounds is not None else None
        m2d = means2d.detach().reshape(I * N, 2).contiguous()
        con = conics.detach().reshape(I * N, 3).contiguous()
        col = colors.detach().reshape(I * N, D).contiguous()
        op = opacities.detach().reshape(I * N).contiguous()
        M, R = bins.flat_ids.numel(), 8 + D
        rec = col.new_zeros(M, R)  # per-intersection records, reduced onto Gaussians in C++
        acc = col.new_zeros(I * N, R)
        getattr(lib, "rc_backward_" + _suffix(dtype))(
            _ptr(m2d), _ptr(con), _ptr(col), _ptr(op), _ptr(bg), _ptr(bins.flat_ids), _ptr(bins.slot_tiles),
            _ptr(bins.slot_offsets), bins.slot_tiles.numel(), M, D, width, height, bins.tile_size, bins.tiles_x,
            bins.tiles_y, _ptr(tfin), _ptr(last), _ptr(v_out), _ptr(va), int(bool(ctx.absgrad)),
            ctx.threads, _ptr(rec), _ptr(acc))
        v_m2d, v_con, v_op, v_abs, v_col = acc[:, 0:2], acc[:, 2:5], acc[:, 5], acc[:, 6:8], acc[:, 8:]
        v_bg = None
        if backgrounds is not None and ctx.needs_input_grad[4]:
            v_bg = (v_out * tfin[..., None]).reshape(I, -1, D).sum(1)
        if ctx.absgrad:
            means2d.absgrad = v_abs.reshape(I, N, 2)
        return (v_m2d.reshape(I, N, 2), v_con.reshape(I, N, 3), v_col.reshape(I, N, D), v_op.reshape(I, N), v_bg,
                None, None, None, None, None)


def bin_gaussians_cpp(means2d: Tensor, radii: Tensor, depths: Tensor, tile_size: int, width: int,
                      height: int) -> TileBins:
    """:func:`avatarbench.render.tiles.bin_gaussians` with the per-intersection loops in C++
    (identical output; a test checks it). Shapes as there: means2d (I,N,2), radii (I,N,2), depths (I,N)."""
    lib = load()
    I, N = depths.shape
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    n_tiles = tiles_x * tiles_y
    sfx = _suffix(means2d.dtype)
    m2d = means2d.detach().reshape(-1, 2).contiguous()
    rad = radii.reshape(-1, 2).to(torch.int32).contiguous()
    tile_counts = torch.zeros(I * n_tiles, dtype=torch.int64)
    getattr(lib, "rc_bin_count_" + sfx)(_ptr(m2d), _ptr(rad), I * N, N, tile_size, tiles_x, tiles_y,
                                        _ptr(tile_counts))
    nonempty = torch.nonzero(tile_counts).squeeze(1)
    by_len = torch.argsort(tile_counts[nonempty], descending=True, stable=True)
    slot_tiles = nonempty[by_len].contiguous()
    slot_counts_t = tile_counts[slot_tiles]
    slot_of_tile = torch.full((I * n_tiles,), -1, dtype=torch.long)
    slot_of_tile[slot_tiles] = torch.arange(slot_tiles.numel())
    slot_offsets = torch.zeros(slot_tiles.numel() + 1, dtype=torch.long)
    slot_offsets[1:] = torch.cumsum(slot_counts_t, 0)
    M = int(slot_offsets[-1])
    visible = (rad > 0).all(-1)
    ids = torch.nonzero(visible).squeeze(1)
    order = ids[torch.argsort(depths.detach().reshape(-1)[ids], stable=True)].contiguous()
    flat_ids, pos_in_slot, slot_of = (torch.empty(M, dtype=torch.long) for _ in range(3))
    getattr(lib, "rc_bin_fill_" + sfx)(_ptr(m2d), _ptr(rad), _ptr(order), order.numel(), N, tile_size, tiles_x,
                                       tiles_y, _ptr(slot_of_tile), _ptr(slot_offsets), slot_tiles.numel(),
                                       _ptr(flat_ids), _ptr(pos_in_slot), _ptr(slot_of))
    return TileBins(tile_size=tile_size, tiles_x=tiles_x, tiles_y=tiles_y, n_images=I, flat_ids=flat_ids,
                    pos_in_slot=pos_in_slot, slot_of=slot_of, slot_tiles=slot_tiles, slot_offsets=slot_offsets,
                    slot_counts=slot_counts_t.tolist())


def count_evals(means2d: Tensor, conics: Tensor, opacities: Tensor, bins: TileBins, width: int,
                height: int) -> tuple[int, int]:
    """Gaussian-pixel evaluations of gsplat's per-pixel loop: (forward, backward) totals.

    Forward counts each pixel's list entries up to and including the one that saturates T;
    backward counts entries up to the pixel's last contributor. Inputs as for the compositor
    (float32, flattened over images).
    """
    lib = load()
    out = torch.zeros(2, dtype=torch.int64)
    m2d = means2d.detach().float().reshape(-1, 2).contiguous()
    con = conics.detach().float().reshape(-1, 3).contiguous()
    op = opacities.detach().float().reshape(-1).contiguous()
    lib.rc_count_evals(_ptr(m2d), _ptr(con), _ptr(op), _ptr(bins.flat_ids), _ptr(bins.slot_tiles),
                       _ptr(bins.slot_offsets), bins.slot_tiles.numel(), width, height, bins.tile_size, bins.tiles_x,
                       bins.tiles_y, _ptr(out))
    return int(out[0]), int(out[1])


def kernel_threads(requested: int) -> int:
    """Threads for the C++ kernel: ``requested`` (torch.get_num_threads()), capped by the idle cores.

    Extra threads only help when cores are free. On a machine that other processes keep busy
    -- and with Linux's autogroup scheduling, where a session's threads share one CPU share --
    a second thread gets no extra CPU and only adds waiting (measured on the shared 2-core dev
    box, issue 11). So the kernel uses at most ``round(cpu_count - loadavg_1min) + 1`` threads
    (the +1 counts this process's own running thread), read at most once a second.
    ``AVATARBENCH_RENDER_THREADS=n`` forces ``n``.
    """
    forced = os.environ.get("AVATARBENCH_RENDER_THREADS")
    if forced:
        return max(1, int(forced))
    if requested <= 1:
        return 1
    import time

    now = time.monotonic()
    if now - _state.get("load_t", -1e9) > 1.0:
        try:
            idle = (os.cpu_count() or 1) - os.getloadavg()[0]
        except OSError:
            idle = float(requested)
        _state["load_t"], _state["idle"] = now, idle
    return max(1, min(requested, int(round(_state["idle"])) + 1))


def compositor_for(t: Tensor, threads: int | None = None):
    """The compositing Function to use for tensors like ``t`` under backend ``cpp``.

    ``threads``: how many threads the kernel uses (default ``torch.get_num_threads()``).
    """
    if t.device.type != "cpu":
        raise ValueError("rasterize: backend='cpp' needs CPU tensors")
    if load() is None:
        raise RuntimeError(f"rasterize: backend='cpp' is unavailable ({_state.get('reason')})")
    _suffix(t.dtype)
    _state["threads"] = kernel_threads(max(1, int(threads or torch.get_num_threads())))
    return RasterizeTilesCpp
