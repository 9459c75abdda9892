"""results/paper/*.csv: uniform schema, spot values from the reference sheets, validation."""

from __future__ import annotations

import pytest

from avatarbench.errors import DataError
from avatarbench.metrics.paper_numbers import COLUMNS, load_paper_results, paper_results_dir


def test_all_files_load_with_uniform_schema():
    df = load_paper_results(include_placeholders=True)
    assert set(df["file"]) == {"gaussian_avatars.csv", "gaussian_head_avatar.csv", "animatable_gaussians.csv"}
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert set(df["verification"]) <= {"VERIFIED", "SECONDARY", "UNVERIFIED"}
    # protocol-only rows are dropped by default
    assert len(load_paper_results()) < len(df)
    assert load_paper_results()[["psnr", "ssim", "lpips", "fid"]].notna().any(axis=1).all()


def _row(df, paper, method, task, table_contains):
    sel = df[(df.paper == paper) & (df.method == method) & (df.task == task) & df.table.str.contains(table_contains, regex=False)]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def test_spot_values_match_reference_sheets():
    df = load_paper_results()
    r = _row(df, "gaussian_avatars", "GaussianAvatars", "novel_view", "Table 1")
    assert (r.psnr, r.ssim, r.lpips, r.verification) == (31.6, 0.938, 0.065, "SECONDARY")
    r = _row(df, "gaussian_avatars", "INSTA", "self_reenact", "Table 1")
    assert (r.psnr, r.ssim, r.lpips) == (26.3, 0.906, 0.110)
    r = _row(df, "gaussian_head_avatar", "Gaussian Head Avatar", "self_reenact", "Table 1 (self-reenactment)")
    assert (r.psnr, r.ssim, r.lpips, r.lpips_resolution) == (27.70, 0.883, 0.056, "512x512")
    r = _row(df, "gaussian_head_avatar", "Gaussian Head Avatar", "self_reenact", "2K columns")
    assert (r.lpips, r.fid) == (0.098, 18.50)
    r = _row(df, "gaussian_head_avatar", "HAvatar", "novel_view", "Table 3")
    assert r.lpips == 0.065  # the v3 text's "0.65" typo corrected, with a note
    assert "typo" in r.notes
    r = _row(df, "animatable_gaussians", "Animatable Gaussians", "unknown", "issue #48")
    assert (r.psnr, r.ssim, r.lpips) == (28.64, 0.9225, 0.0821)
    own = df[df.is_paper_method]
    assert {"GaussianAvatars", "Gaussian Head Avatar", "Animatable Gaussians"} <= set(own.method)
    # method_id links rows to the suite's registry ids (GA also appears in the HHAvatar table)
    ga = df[df.method_id == "gaussian_avatars"]
    assert set(ga.method) == {"GaussianAvatars"} and set(ga.paper) == {"gaussian_avatars", "gaussian_head_avatar"}
    assert (df[df.method_id == ""].method != "GaussianAvatars").all()


def test_loader_rejects_bad_files(tmp_path):
    src = (paper_results_dir() / "gaussian_avatars.csv").read_text()
    (tmp_path / "a.csv").write_text(src.replace("SECONDARY", "MAYBE", 1))
    with pytest.raises(DataError, match="verification"):
        load_paper_results(tmp_path)
    (tmp_path / "a.csv").write_text(src.replace("paper,table", "paper,tbl", 1))
    with pytest.raises(DataError, match="columns"):
        load_paper_results(tmp_path)
    (tmp_path / "a.csv").write_text(src.replace(",31.6,", ",31.6x,", 1))
    with pytest.raises(DataError, match="psnr"):
        load_paper_results(tmp_path)
    with pytest.raises(DataError):
        load_paper_results(tmp_path / "empty")
