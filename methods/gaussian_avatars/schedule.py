"""The training schedule: iteration counts scaled by one knob, and the position learning rate.

Every iteration count in ``cfg.method`` is written at the paper (600k) scale; the effective value
is ``max(1, round(value * train.schedule_scale))`` (0 stays 0), so one knob scales the whole
schedule: total iterations, SH-degree interval, densification start / stop / interval, opacity
reset interval and the position-LR decay length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def scaled(value: int | float, scale: float) -> int:
    """An iteration count at ``scale`` of the paper schedule (0 stays 0, anything else >= 1)."""
    v = int(value)
    if v == 0:
        return 0
    return max(1, int(round(v * float(scale))))


def expon_lr(step: int, lr_init: float, lr_final: float, max_steps: int, delay_steps: int = 0,
             delay_mult: float = 1.0) -> float:
    """Log-linear decay from ``lr_init`` (step 0) to ``lr_final`` (step ``max_steps``), constant
    after; with the 3DGS optional sine warm-up over ``delay_steps`` (0 in GaussianAvatars)."""
    if step < 0 or (lr_init == 0.0 and lr_final == 0.0):
        return 0.0
    if delay_steps > 0:
        delay = delay_mult + (1 - delay_mult) * math.sin(0.5 * math.pi * min(max(step / delay_steps, 0.0), 1.0))
    else:
        delay = 1.0
    t = min(max(step / max(max_steps, 1), 0.0), 1.0)
    return delay * math.exp(math.log(lr_init) * (1 - t) + math.log(lr_final) * t)


@dataclass(frozen=True)
class Schedule:
    """Effective (scaled) iteration counts.

    Attributes:
        iterations: total training iterations.
        sh_interval: one SH degree is added every ``sh_interval`` iterations.
        position_lr_max_steps: the position LR decays over this many iterations.
        densify_from, densify_until, densify_interval, reset_interval: density-control schedule.
    """

    iterations: int
    sh_interval: int
    position_lr_max_steps: int
    densify_from: int
    densify_until: int
    densify_interval: int
    reset_interval: int

    @classmethod
    def from_cfg(cls, cfg) -> "Schedule":
        s = float(cfg.train.schedule_scale)
        d = cfg.density
        return cls(
            iterations=scaled(cfg.train.iterations, s),
            sh_interval=scaled(cfg.train.sh_degree_interval, s),
            position_lr_max_steps=scaled(cfg.optim.position_lr_max_steps, s),
            densify_from=scaled(d.densify_from_iter, s),
            densify_until=scaled(d.densify_until_iter, s),
            densify_interval=scaled(d.densification_interval, s),
            reset_interval=scaled(d.opacity_reset_interval, s),
        )

    def densify_iterations(self) -> list[int]:
        """1-based iterations that run densification (``from < it < until``, ``it % interval == 0``,
        ``it <= iterations``); each one replaces the Gaussian tensors, so Adam skips that update."""
        stop = min(self.densify_until, self.iterations + 1)
        return [it for it in range(self.densify_from + 1, stop) if it % max(1, self.densify_interval) == 0]

    def reset_iterations(self, extra_at_start: bool = True) -> list[int]:
        """1-based iterations of the opacity resets (``it % reset_interval == 0`` while
        ``it < densify_until``, plus ``it == densify_from`` for a white background)."""
        stop = min(self.densify_until, self.iterations + 1)
        its = {it for it in range(self.reset_interval, stop, self.reset_interval)} if self.reset_interval > 0 else set()
        if extra_at_start and 0 < self.densify_from < stop:
            its.add(self.densify_from)
        return sorted(its)

    def active_sh_degree(self, iteration: int, max_degree: int) -> int:
        """SH degree in use at 1-based ``iteration`` (the degree is raised before rendering)."""
        return min(max_degree, iteration // self.sh_interval)
