"""The shared training loop: deterministic sampling, checkpoints and exact resume."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from avatarbench.engine.checkpoint import list_checkpoints, load_checkpoint
from avatarbench.engine.logging import RunLogger, read_log
from avatarbench.engine.sampler import FrameSampler
from avatarbench.engine.trainer import seed_everything, train
from tests.engine.toy import ToyMethod, toy_subject


def _cfg(**engine):
    base = OmegaConf.load(__import__("avatarbench.paths", fromlist=["x"]).configs_dir() / "defaults.yaml")
    base.engine.progress = False
    base.engine.log_every = 1
    base.engine.checkpoint_every = 3
    base.engine.update(engine)
    return base


def test_sampler_epochs_are_permutations_and_resumable():
    s = FrameSampler(5, seed=1)
    first = [s.next() for _ in range(5)]
    assert sorted(first) == list(range(5))
    a = [s.next() for _ in range(3)]
    state = s.state_dict()
    rest = [s.next() for _ in range(6)]
    s2 = FrameSampler(5, seed=1)
    s2.load_state_dict(state)
    assert [s2.next() for _ in range(6)] == rest


def _run(tmp_path, name, stop_after=None, method=None):
    subject = toy_subject(tmp_path / "data")
    frames = subject.frames("train")
    cfg = _cfg()
    run_dir = tmp_path / name
    run_dir.mkdir(exist_ok=True)
    if method is None:
        seed_everything(0)
        method = ToyMethod(None, subject, "cpu", iterations=10)
        method.setup(frames)
    logger = RunLogger(run_dir, cfg.engine.wandb)
    res = train(method, frames, cfg, run_dir, logger=logger, stop_after=stop_after)
    return method, res, run_dir


def test_interrupted_run_resumes_bit_exactly(tmp_path):
    straight, res, _ = _run(tmp_path, "straight")
    assert res.steps == 10 and res.resumed_from is None

    _, part, run_dir = _run(tmp_path, "resumed", stop_after=4)
    assert part.steps == 4 and [s for s, _ in list_checkpoints(run_dir)][-1] == 4
    # new process: fresh seeds, fresh method; train() must restore everything from the checkpoint
    seed_everything(123)
    subject = toy_subject(tmp_path / "data")
    m2 = ToyMethod(None, subject, "cpu", iterations=10)
    m2.setup(subject.frames("train"))
    m2, res2, _ = _run(tmp_path, "resumed", method=m2)
    assert res2.resumed_from == 4 and res2.steps == 10
    assert torch.equal(m2.img, straight.img)
    # the log has one row per step, with no duplicates from the interrupted part
    steps = [r["step"] for r in read_log(run_dir)]
    assert steps == list(range(1, 11))


def test_checkpoint_payload_and_retention(tmp_path):
    _, _, run_dir = _run(tmp_path, "ck")
    cks = list_checkpoints(run_dir)
    assert [s for s, _ in cks] == [9, 10]  # keep_checkpoints = 2, every 3 steps + final
    payload = load_checkpoint(cks[-1][1])
    assert payload["step"] == 10 and set(payload) >= {"method", "sampler", "rng", "train_seconds"}


def test_finished_training_is_not_repeated(tmp_path):
    m, res, run_dir = _run(tmp_path, "done")
    before = m.img.detach().clone()
    m, res2, _ = _run(tmp_path, "done", method=m)
    assert res2.steps == 10 and res2.resumed_from == 10 and torch.equal(m.img, before)
