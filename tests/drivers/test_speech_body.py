"""SMPL-X speech body motion: joint limits, smoothness, no foot sliding, beats at loudness peaks."""

import numpy as np
import pytest
import torch

from avatarbench.drivers.speech_body import OFFSET_LIMITS, SpeechBodyDriver, beat_times
from avatarbench.drivers.tts import tts_available


def test_beat_times_hand_computed():
    loud = np.array([0, 0.2, 0.9, 0.3, 0.1, 0.7, 0.2, 0.0, 0.8, 0.1])
    # peaks at frames 2 (0.9), 5 (0.7), 8 (0.8); at 10 fps, 0.45 s apart drops frame 5 (0.3 s from 2)
    assert beat_times(loud, 10.0, []) == [0.2, 0.8]
    assert beat_times(loud, 10.0, [0.5], min_gap=0.25) == [0.2, 0.5, 0.8]


@pytest.mark.skipif(not tts_available(), reason="espeakng-loader not installed")
def test_body_motion_limits_smooth_and_feet_fixed():
    from avatarbench.bodymodels.smplx import JOINT_NAMES, load_smplx
    from avatarbench.drivers.speech_face import SpeechFaceDriver

    smplx = load_smplx()
    face = SpeechFaceDriver(text="Well, I really think this is the best idea we have had all year.")
    seq = SpeechBodyDriver(face, base={}, smplx=smplx).generate()
    T = len(seq)
    assert seq.body_model == "smplx" and seq.params["body_pose"].shape == (T, 63)
    assert len(seq.meta["beats_s"]) >= 2
    for n, lim in OFFSET_LIMITS.items():
        assert np.abs(seq.offsets[n]).max() <= lim + 1e-12, n
    assert 0.0 <= seq.params["jaw_pose"][:, 0].min() and seq.params["jaw_pose"][:, 0].max() > 0.02
    # smooth: per-frame change of every joint angle below 0.08 rad at 25 fps
    assert np.abs(np.diff(seq.params["body_pose"], axis=0)).max() < 0.08
    # the arms do move (beats), the feet do not (forward kinematics on the SMPL-X stand-in)
    with torch.no_grad():
        J = smplx(**{k: torch.as_tensor(v) for k, v in seq.params.items()}).joints.numpy()
    feet = [JOINT_NAMES.index(n) for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")]
    assert np.abs(J[:, feet] - J[:1, feet]).max() < 1e-5
    wrists = [JOINT_NAMES.index(n) for n in ("left_wrist", "right_wrist")]
    rest = smplx().joints.numpy()[0]
    assert np.abs(J[:, wrists] - J[:1, wrists]).max() > 0.03
    # beats bring the hands forward (+z, the body front), never far behind the rest pose
    dz = J[:, wrists, 2] - rest[wrists, 2]
    assert dz.max() > 0.05 and dz.min() > -0.03  # spine sway (<= 0.03 rad about y) turns the shoulders a little


def test_smplx_sequence_written_in_body_dataset_format(tmp_path):
    from avatarbench.data.smpl_params import FRAME_KEYS, load_smplx_params
    from avatarbench.drivers.base import ParamSequence, write_sequence

    T = 3
    params = {k: np.full((T, n or 10), 0.1 * (i + 1), np.float32) for i, (k, n) in enumerate(FRAME_KEYS.items())}
    write_sequence(ParamSequence("smplx", 25.0, params), tmp_path / "s", identity={"betas": np.ones(10)})
    back = load_smplx_params(tmp_path / "s" / "smpl_params.npz")
    np.testing.assert_array_equal(back.per_frame["body_pose"], params["body_pose"])
    np.testing.assert_array_equal(back.betas, np.ones(10, np.float32))
    from avatarbench.drivers.base import read_sequence

    seq = read_sequence(tmp_path / "s")  # usable again as data.driver=params:FOLDER
    assert seq.body_model == "smplx" and seq.fps == 25.0
    np.testing.assert_array_equal(seq.params["jaw_pose"], params["jaw_pose"])
