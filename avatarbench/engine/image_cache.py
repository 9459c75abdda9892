"""Training images kept in memory as uint8, up to a byte budget; the rest load on demand."""

from __future__ import annotations

from collections import OrderedDict

import torch

from avatarbench.data.subject import Frame


class ImageCache:
    """LRU cache of (image, mask) per frame key, stored as uint8 to save memory.

    Args:
        max_bytes: budget; 0 disables caching.
    """

    def __init__(self, max_bytes: float):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, tuple[torch.Tensor, torch.Tensor | None]] = OrderedDict()
        self._bytes = 0

    def get(self, frame: Frame, device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns image (H, W, 3) and mask (H, W, 1) | None as float32 on ``device``."""
        key = f"{frame.key}@{frame.camera.width}x{frame.camera.height}"
        if key in self._items:
            self._items.move_to_end(key)
            img8, mask8 = self._items[key]
        else:
            img8 = (frame.image() * 255.0 + 0.5).to(torch.uint8)
            m = frame.mask()
            mask8 = None if m is None else (m * 255.0 + 0.5).to(torch.uint8)
            size = img8.numel() + (mask8.numel() if mask8 is not None else 0)
            if self.max_bytes > 0 and size <= self.max_bytes:
                self._items[key] = (img8, mask8)
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, (a, b) = self._items.popitem(last=False)
                    self._bytes -= a.numel() + (b.numel() if b is not None else 0)
        img = img8.to(device=device, dtype=torch.float32) / 255.0
        mask = None if mask8 is None else mask8.to(device=device, dtype=torch.float32) / 255.0
        return img, mask
