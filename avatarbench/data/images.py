"""Image I/O with consistent resizing, background compositing and one-line errors.

Images are returned as float32 torch tensors in [0, 1], channels last: (H, W, C).
Resizing uses area averaging (antialiased) so that downscaled ground truth matches a camera whose
intrinsics were scaled by :meth:`avatarbench.data.camera.Camera.resized`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avatarbench.errors import DataError


def read_image_array(path: str | Path) -> np.ndarray:
    """Read an image file to a float32 (H, W, C) array in [0, 1]. C is 1, 3 or 4."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.exists():
        raise DataError(path, "image file not found")
    try:
        arr = np.asarray(iio.imread(path))
    except Exception as e:  # imageio raises many types for corrupt files
        raise DataError(path, f"unreadable image ({type(e).__name__})", "a PNG/JPEG file") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise DataError(path, f"image has shape {arr.shape}", "(H, W), (H, W, 3) or (H, W, 4)")
    if arr.shape[2] == 2:  # grey + alpha
        arr = np.concatenate([arr[..., :1].repeat(3, axis=2), arr[..., 1:]], axis=2)
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0 if arr.dtype == np.uint8 else 1.0
    return arr.astype(np.float32) / scale


def resize_hwc(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize an (H, W, C) tensor to ``size = (width, height)`` (area/antialiased bilinear)."""
    w, h = size
    if img.shape[0] == h and img.shape[1] == w:
        return img
    x = img.permute(2, 0, 1)[None]
    if h < img.shape[0] and w < img.shape[1] and img.shape[0] % h == 0 and img.shape[1] % w == 0:
        x = F.adaptive_avg_pool2d(x, (h, w))  # exact box filter for integer factors
    else:
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x[0].permute(1, 2, 0).contiguous()


def check_native_size(path: str | Path, arr: np.ndarray, expect_size: tuple[int, int] | None) -> None:
    """Raise DataError when an (H, W, C) array read from ``path`` is not ``expect_size = (width, height)``."""
    if expect_size is None:
        return
    w, h = int(expect_size[0]), int(expect_size[1])
    if arr.shape[1] != w or arr.shape[0] != h:
        raise DataError(path, f"image is {arr.shape[1]}x{arr.shape[0]} pixels",
                        f"{w}x{h} as given by the dataset's camera (w, h)")


def load_image(path: str | Path, size: tuple[int, int] | None = None, background=(1.0, 1.0, 1.0),
               mask_path: str | Path | None = None, expect_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Load an RGB image composited on ``background``.

    Alpha comes from the image's own alpha channel, else from ``mask_path`` when given.
    ``expect_size = (width, height)``: the file's native size, checked before resizing (so that
    resized images always match intrinsics scaled from that size).

    Returns:
        (H, W, 3) float32 in [0, 1] at ``size = (width, height)`` (native size if None).
    """
    a = read_image_array(path)
    check_native_size(path, a, expect_size)
    arr = torch.from_numpy(a)
    rgb = arr[..., :3] if arr.shape[2] >= 3 else arr[..., :1].expand(-1, -1, 3)
    alpha = arr[..., 3:4] if arr.shape[2] == 4 else None
    if alpha is None and mask_path is not None:
        alpha = load_mask(mask_path, (rgb.shape[1], rgb.shape[0]))
    if alpha is not None:
        bg = torch.tensor(background, dtype=rgb.dtype)
        rgb = rgb * alpha + bg * (1 - alpha)
    if size is not None:
        rgb = resize_hwc(rgb, size)
    return rgb.clamp(0, 1)


def load_mask(path: str | Path, size: tuple[int, int] | None = None,
              expect_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Load a foreground mask as (H, W, 1) float32 in [0, 1] (first channel, or alpha if RGBA).

    ``expect_size = (width, height)``: the file's native size, checked before resizing.
    """
    a = read_image_array(path)
    check_native_size(path, a, expect_size)
    arr = torch.from_numpy(a)
    m = arr[..., 3:4] if arr.shape[2] == 4 else arr[..., :1]
    if size is not None:
        m = resize_hwc(m, size)
    return m.clamp(0, 1)


def save_png(path: str | Path, img: torch.Tensor | np.ndarray) -> None:
    """Save an (H, W, 3|1) image in [0, 1] as 8-bit PNG (round-to-nearest)."""
    import imageio.v3 as iio

    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    a = (np.clip(a, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # encode in memory, then one plain write: a failing write (disk full) is an ordinary OSError
    # here, not an exception in an imageio file object's destructor (same bytes as writing directly)
    Path(path).write_bytes(iio.imwrite("<bytes>", a, extension=".png"))
