"""NeRSemble benchmark submissions: zip layout, frame-count validation, overwrite refusal, the
official toolkit's validator and reader (when the toolkit is importable), and `avatarbench submit`
end to end on the synthetic stand-in."""

from __future__ import annotations

import io
import sys
import types
import zipfile

import numpy as np
import pytest

pytest.importorskip("av", reason="PyAV encodes and decodes the submission videos")

from avatarbench.engine.submission import (  # noqa: E402
    SubmissionExistsError,
    expected_frame_counts,
    validate_frame_counts,
    write_submission,
)


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    from avatarbench.data.synth.nersemble_benchmark_writer import ensure_nersemble_benchmark

    return ensure_nersemble_benchmark(preset="tiny") / "393"  # once per session, private cache


def _colour_videos(expected: dict[str, int]):
    """Each video's frame t is a flat colour (10 * (t + 1), k, 255 - k), k = the video's index."""
    for k, (name, T) in enumerate(sorted(expected.items())):
        pid, seq, cam = name.split("/")
        frames = np.zeros((T, 512, 512, 3), np.uint8)
        for t in range(T):
            frames[t] = (10 * (t + 1), k, 255 - k)
        yield int(pid), seq, cam[4:-4], frames


def _decode(data: bytes) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_expected_counts_from_tracking(standin):
    exp = expected_frame_counts([standin])
    assert len(exp) == 4 * 4
    assert exp["393/FREE/cam_222200037.mp4"] == 2  # the tiny stand-in's test sequences have 2 frames
    assert set(n.split("/")[2] for n in exp) == {"cam_222200037.mp4", "cam_222200046.mp4", "cam_220700191.mp4",
                                                  "cam_222200039.mp4"}


def test_own_writer_layout_validation_and_no_overwrite(standin, tmp_path):
    exp = expected_frame_counts([standin])
    z = tmp_path / "sub.zip"
    written = write_submission(z, _colour_videos(exp), use_toolkit=False)
    assert written == exp
    assert validate_frame_counts(z, exp) == {}
    with zipfile.ZipFile(z) as zf:
        assert sorted(zf.namelist()) == sorted(exp)
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        name = sorted(exp)[3]
        v = _decode(zf.read(name))
    assert v.shape == (2, 512, 512, 3)
    # frame order and colours survive crf 14 (within H.264 / yuv420p rounding)
    assert np.abs(v[:, 256, 256].astype(int) - np.array([[10, 3, 252], [20, 3, 252]])).max() <= 3
    import av

    with av.open(io.BytesIO(zipfile.ZipFile(z).read(name))) as c:
        s = c.streams.video[0]
        assert s.average_rate == pytest.approx(24.3) and s.codec_context.pix_fmt == "yuv420p"
    # never overwrites silently; the existing zip is untouched
    before = z.read_bytes()
    with pytest.raises(SubmissionExistsError, match="exists; not overwriting"):
        write_submission(z, _colour_videos(exp), use_toolkit=False)
    assert z.read_bytes() == before
    assert not list(tmp_path.glob("*.partial"))


def test_validation_reports_wrong_counts_missing_and_unexpected(standin, tmp_path):
    exp = expected_frame_counts([standin])
    bad = dict(exp)
    bad["393/FREE/cam_222200046.mp4"] = 3  # one video rendered with a frame too many
    del bad["393/FREE/cam_222200039.mp4"]  # one missing
    z = tmp_path / "bad.zip"
    write_submission(z, _colour_videos(bad), use_toolkit=False)
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr("393/notes.txt", "x")
    issues = validate_frame_counts(z, exp)
    assert issues["missing_files"] == ["393/FREE/cam_222200039.mp4"]
    assert issues["wrong_frame_counts"] == [("393/FREE/cam_222200046.mp4", 3, 2)]
    assert issues["unexpected_files"] == ["393/notes.txt"]
    assert "wrong_resolutions" not in issues


def _import_toolkit():
    """The toolkit's submission module, or skip. open3d (8 GB environment; used only by the nvs
    point-cloud loader) is replaced by an empty module when absent."""
    pytest.importorskip("nersemble_benchmark", reason="nersemble-benchmark not installed "
                        "(pip install --no-deps nersemble-benchmark==0.2.0 plus its small deps, see "
                        "datasets/nersemble_benchmark.md)")
    if "open3d" not in sys.modules:
        try:
            import open3d  # noqa: F401
        except ImportError:
            sys.modules["open3d"] = types.ModuleType("open3d")
    try:
        import nersemble_benchmark.data.submission_data as sd
    except ImportError as e:
        pytest.skip(f"nersemble-benchmark installed but not importable here: {e}")
    return sd


def test_toolkit_validator_and_reader_accept_our_zip(standin, tmp_path):
    """All 5 participants x 4 sequences x 4 cameras, counts from the stand-in's tracking files."""
    sd = _import_toolkit()
    from avatarbench.data.nersemble_benchmark import MONO_IDS
    from avatarbench.engine.submission import toolkit_validate

    one = expected_frame_counts([standin])
    exp = {n.replace("393/", f"{pid:03d}/", 1): T for pid in MONO_IDS for n, T in one.items()}
    assert len(exp) == 80
    z = tmp_path / "own.zip"
    write_submission(z, _colour_videos(exp), use_toolkit=False)
    assert validate_frame_counts(z, exp) == {}
    assert toolkit_validate(z, exp) == {}
    # the toolkit's reader decodes the expected frames
    r = sd.MonoFlameAvatarSubmissionDataReader(str(z))
    assert r.is_complete()
    frames = r.load_video(461, "SEN-09-frown_events_bad", "220700191")
    assert len(frames) == 2 and frames[0].shape == (512, 512, 3)
    r._zipf.close()
    # its validator notices a sequence whose metadata says 5 frames (the metadata is per sequence)
    short = {n: (5 if n.startswith("486/FREE/") else T) for n, T in exp.items()}
    got = toolkit_validate(z, short)["wrong_frame_counts"]
    assert sorted(got) == sorted((n, 2, 5) for n in exp if n.startswith("486/FREE/"))


def test_toolkit_writer_gives_the_same_layout(standin, tmp_path):
    _import_toolkit()
    exp = expected_frame_counts([standin])
    z = tmp_path / "toolkit.zip"
    write_submission(z, _colour_videos(exp), use_toolkit=True)
    assert validate_frame_counts(z, exp) == {}
    with zipfile.ZipFile(z) as zf:
        v = _decode(zf.read(sorted(exp)[3]))
    assert np.abs(v[:, 256, 256].astype(int) - np.array([[10, 3, 252], [20, 3, 252]])).max() <= 3


def test_local_protocol_run_appears_in_table(standin, tmp_path):
    """`avatarbench run` on the local protocol (held-out training sequence) is scored and tabled."""
    from avatarbench.engine.config import RunRequest
    from avatarbench.engine.run import execute
    from avatarbench.results.table import build_table

    req = RunRequest(method="flame_gaussians", split="self_reenact", preset="smoke", ablation=None,
                     sets=("data.protocol=nersemble_mono_local", "method.train.iterations=5", "data.scale=1.0",
                           "engine.wandb.mode=disabled", f"output.root={tmp_path / 'runs'}"),
                     subject=None, data_path=str(standin))
    out = execute(req, None, echo=lambda *a: None, progress=False)
    assert out.results["dataset"] == "nersemble_mono_local"
    assert out.results["subject"] == "nersemble_393_local"
    assert out.results["num_frames"] == 1 and out.results["metrics"]["psnr"] > 5
    text, _ = build_table(tmp_path / "runs", with_paper=False)
    # one row, labelled with the overrides that make it its own configuration (the local protocol)
    assert "flame_gaussians (smoke+set(" in text
    assert "self_reenact PSNR" in text


def test_submit_refuses_an_existing_zip_before_rendering(tmp_path):
    from avatarbench.engine.submission import run_submit

    z = tmp_path / "submission.zip"
    z.write_bytes(b"previous")
    with pytest.raises(SubmissionExistsError):
        run_submit([tmp_path / "no_such_run"], z)
    assert z.read_bytes() == b"previous"


def test_protocol_option_is_refused_for_other_formats():
    from avatarbench.data import load_subject
    from avatarbench.errors import ConfigError

    with pytest.raises(ConfigError, match="applies to NeRSemble benchmark folders only"):
        load_subject("synth_head_a", preset="tiny", protocol="nersemble_mono_local")


def test_gaussian_avatars_monocular_extent_is_not_zero(standin):
    """3DGS's cameras_extent is 0 with one training camera (it would split/prune every Gaussian);
    GaussianAvatars then uses factor x the camera's distance to the mean head translation."""
    import torch

    from avatarbench.data import load_subject
    from avatarbench.engine.config import RunRequest, resolve_config
    from avatarbench.engine.registry import load_method_class

    cfg = resolve_config(RunRequest(method="gaussian_avatars", split="self_reenact", preset="smoke", ablation=None,
                                    sets=("data.scale=1.0",), subject=None, data_path=str(standin)))
    subject = load_subject(standin)
    frames = subject.frames("train")
    m = load_method_class("gaussian_avatars")(cfg.method, subject, torch.device("cpu"))
    m.setup(frames)
    head = np.mean([np.asarray(f.driving["translation"], np.float64) for f in frames], axis=0)
    want = float(np.linalg.norm(frames[0].camera.center.numpy() - head)) * float(cfg.method.density.camera_extent_factor)
    assert m.extent == pytest.approx(want, rel=1e-9) and m.extent > 0.5


def test_cli_synth_and_submit(standin, tmp_path, capsys):
    """`data synth --format nersemble-benchmark` prints the stand-in; `submit` onto an existing zip
    is a one-line error with exit status 2 and leaves the zip alone."""
    from avatarbench.cli.main import main

    main(["data", "synth", "--format", "nersemble-benchmark", "--preset", "tiny"])
    assert capsys.readouterr().out.strip() == f"mono_flame_avatar: {standin.parent}"
    z = tmp_path / "s.zip"
    z.write_bytes(b"keep")
    with pytest.raises(SystemExit) as e:
        main(["submit", str(tmp_path), "--out", str(z)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error: ") and "exists; not overwriting" in err
    assert len(err.splitlines()) == 1 and z.read_bytes() == b"keep"


def test_dataset_table_keeps_datasets_apart():
    import pandas as pd

    from avatarbench.results.table import dataset_table

    rows = [("synth_head_a", "synthetic_head", 30.0), ("nersemble_393_local", "nersemble_mono_local", 20.0),
            ("nersemble_404_local", "nersemble_mono_local", 24.0)]
    # the columns results_frame gives a record: one training config ("smoke"), one run folder each
    df = pd.DataFrame([{"method": "ga", "variant": "full", "preset": "smoke", "config": "smoke", "subject": s,
                        "split": "self_reenact", "dataset": d, "psnr": p, "run_dir": f"runs/{s}", "seed": 0}
                       for s, d, p in rows])
    t, disp = dataset_table(df)
    assert t.loc["ga (smoke) · nersemble_mono_local", "self_reenact PSNR↑"] == pytest.approx(22.0)
    assert t.loc["ga (smoke) · synthetic_head", "self_reenact PSNR↑"] == pytest.approx(30.0)
    assert t.loc["ga (smoke) · nersemble_mono_local", "subjects"] == 2
    assert disp.loc["ga (smoke) · nersemble_mono_local", "self_reenact n"] == "2 runs / 1 seed"


def test_unset_data_protocol_leaves_the_training_identity_unchanged():
    """`data.protocol: null` (added with the NeRSemble benchmark) must not change the config sha of
    existing runs; a set protocol is part of the identity."""
    from avatarbench.engine.config import RunRequest, resolve_config, training_identity

    req = dict(method="flame_gaussians", split="self_reenact", preset="smoke", ablation=None, subject=None,
               data_path=None)
    ident = training_identity(resolve_config(RunRequest(sets=(), **req)))
    assert "protocol" not in ident["data"]
    ident2 = training_identity(resolve_config(RunRequest(sets=("data.protocol=nersemble_mono_local",), **req)))
    assert ident2["data"]["protocol"] == "nersemble_mono_local"
