"""A training process for kill/resume tests: the engine's real loop on the toy method.

Usage: python -m tests.reliability.toy_train RUN_DIR ITERATIONS CHECKPOINT_EVERY SLEEP_SECONDS

Prints ``step N`` after every step (flushed) so the parent can time its signals, and the final
image's SHA-256 when training finishes.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from avatarbench.engine.logging import RunLogger
from avatarbench.engine.trainer import seed_everything, train
from avatarbench.paths import configs_dir
from tests.engine.toy import ToyMethod, toy_subject


class SlowToy(ToyMethod):
    sleep = 0.0

    def train_step(self, sample, step):
        out = super().train_step(sample, step)
        print(f"step {step + 1}", flush=True)
        time.sleep(self.sleep)
        return out


def main(run_dir: str, iterations: str, ck_every: str, sleep: str) -> None:
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    cfg = OmegaConf.load(configs_dir() / "defaults.yaml")
    cfg.engine.progress = False
    cfg.engine.log_every = 1
    cfg.engine.checkpoint_every = int(ck_every)
    subject = toy_subject(run.parent / (run.name + "_data"))
    seed_everything(0)
    SlowToy.sleep = float(sleep)
    m = SlowToy(None, subject, "cpu", iterations=int(iterations))
    m.setup(subject.frames("train"))
    logger = RunLogger(run, cfg.engine.wandb)
    res = train(m, subject.frames("train"), cfg, run, logger=logger, echo=lambda s: print(s, flush=True))
    print("done", res.steps, hashlib.sha256(m.img.detach().numpy().tobytes()).hexdigest(), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
