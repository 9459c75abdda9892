"""Deterministic, resumable order of training frames (shuffled epochs, batch size 1).

Equivalent to a shuffled DataLoader with ``batch_size=None`` as in the official head methods,
but its full state (epoch, position, generator) goes into checkpoints, so a resumed run sees
exactly the frames an uninterrupted run would have seen.
"""

from __future__ import annotations

import torch


class FrameSampler:
    """Yields indices into a list of ``n`` training frames, one shuffled epoch after another."""

    def __init__(self, n: int, seed: int):
        if n <= 0:
            raise ValueError("the training split has no frames")
        self.n = n
        self.seed = seed
        self.epoch = 0
        self.pos = 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def next(self) -> int:
        if self.pos >= self.n:
            self.epoch += 1
            self.pos = 0
            self._perm = self._permutation(self.epoch)
        i = int(self._perm[self.pos])
        self.pos += 1
        return i

    def state_dict(self) -> dict:
        return {"n": self.n, "seed": self.seed, "epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != self.n:
            raise ValueError(f"checkpoint sampler has {state['n']} frames, the training split has {self.n}")
        self.seed, self.epoch, self.pos = state["seed"], state["epoch"], state["pos"]
        self._perm = self._permutation(self.epoch)
