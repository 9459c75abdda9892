"""Published numbers of each method and its baselines (``results/paper/*.csv``), as one table.

All CSV files share the schema :data:`COLUMNS` (see ``results/paper/README.md``). Each row is one
(table, method, setting) with its numbers, provenance (``source``) and a ``verification`` marker:

- ``VERIFIED``   read in a primary source (the paper text or the official code);
- ``SECONDARY``  quoted by a third party (another paper, a summary, a GitHub issue);
- ``UNVERIFIED`` not confirmed; protocol-only rows have empty metric columns.
"""

from __future__ import annotations

from pathlib import Path

from avatarbench.errors import DataError

__all__ = ["COLUMNS", "METHOD_IDS", "METRIC_COLUMNS", "VERIFICATION_MARKERS", "TASKS", "paper_results_dir", "load_paper_results"]

COLUMNS = ("paper", "table", "method", "method_id", "is_paper_method", "dataset", "task", "suite_split", "psnr", "ssim",
           "lpips", "lpips_net", "lpips_resolution", "fid", "resolution", "masking", "background", "subjects",
           "eval_views", "source", "verification", "notes")
METRIC_COLUMNS = ("psnr", "ssim", "lpips", "fid")
#: CSVs in results/paper that are not published-results tables (they have schemas of their own)
NOT_PAPER_RESULTS = ("ablations.csv",)
VERIFICATION_MARKERS = ("VERIFIED", "SECONDARY", "UNVERIFIED")
TASKS = ("novel_view", "self_reenact", "cross_reenact", "novel_pose", "unknown")
LPIPS_NETS = ("alex", "vgg", "unknown", "")
_SUITE_SPLITS = ("novel_view", "self_reenact", "cross_reenact", "")
# suite registry ids a row can be a number for ("" = a baseline or a variant the suite does not run)
METHOD_IDS = ("gaussian_avatars", "gaussian_head_avatar", "animatable_gaussians", "")


def paper_results_dir() -> Path:
    """``results/paper`` of the source checkout (``$AVATARBENCH_PAPER_RESULTS`` overrides)."""
    import os

    if os.environ.get("AVATARBENCH_PAPER_RESULTS"):
        return Path(os.environ["AVATARBENCH_PAPER_RESULTS"])
    from avatarbench.paths import repo_root

    root = repo_root()
    if root is None:
        raise DataError("results/paper", "not found (avatarbench is not running from a source checkout)",
                        "a checkout, or $AVATARBENCH_PAPER_RESULTS pointing at the CSV folder")
    return root / "results" / "paper"


def load_paper_results(directory: str | Path | None = None, *, include_placeholders: bool = False):
    """Read every ``*.csv`` in ``results/paper`` (but :data:`NOT_PAPER_RESULTS`) into one validated DataFrame.

    Args:
        directory: folder of CSVs (default :func:`paper_results_dir`).
        include_placeholders: keep protocol-only rows whose metric columns are all empty.

    Returns:
        ``pandas.DataFrame`` with :data:`COLUMNS` plus ``file``; metric columns are float (NaN when
        not reported), ``is_paper_method`` is bool, text columns are str ("" when empty).

    Raises:
        DataError: a file's header differs from :data:`COLUMNS`, or a cell is invalid.
    """
    import pandas as pd

    folder = Path(directory) if directory is not None else paper_results_dir()
    # ablations.csv holds the papers' ablation claims in a schema of its own (avatarbench.results.study)
    files = sorted(f for f in folder.glob("*.csv") if f.name not in NOT_PAPER_RESULTS)
    if not files:
        raise DataError(folder, "no *.csv files", "gaussian_avatars.csv, gaussian_head_avatar.csv, ...")
    frames = []
    for f in files:
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
        if tuple(df.columns) != COLUMNS:
            raise DataError(f, f"columns {list(df.columns)}", f"exactly {list(COLUMNS)}")
        for i, row in df.iterrows():
            where = f"{f.name} row {i + 2}"  # +1 header, +1 one-based
            if row["verification"] not in VERIFICATION_MARKERS:
                raise DataError(f, f"{where}: verification {row['verification']!r}", " | ".join(VERIFICATION_MARKERS))
            if row["task"] not in TASKS:
                raise DataError(f, f"{where}: task {row['task']!r}", " | ".join(TASKS))
            if row["suite_split"] not in _SUITE_SPLITS:
                raise DataError(f, f"{where}: suite_split {row['suite_split']!r}", " | ".join(s or "''" for s in _SUITE_SPLITS))
            if row["lpips_net"] not in LPIPS_NETS:
                raise DataError(f, f"{where}: lpips_net {row['lpips_net']!r}", "alex | vgg | unknown | empty")
            if row["method_id"] not in METHOD_IDS:
                raise DataError(f, f"{where}: method_id {row['method_id']!r}", " | ".join(m or "''" for m in METHOD_IDS))
            if row["is_paper_method"] not in ("True", "False"):
                raise DataError(f, f"{where}: is_paper_method {row['is_paper_method']!r}", "True | False")
            if not row["method"] or not row["paper"] or not row["source"]:
                raise DataError(f, f"{where}: empty paper/method/source", "non-empty values")
            for c in METRIC_COLUMNS:
                if row[c] != "":
                    try:
                        v = float(row[c])
                    except ValueError:
                        raise DataError(f, f"{where}: {c} = {row[c]!r}", "a number or empty") from None
                    if c in ("ssim", "lpips") and not 0.0 <= v <= 1.0:
                        raise DataError(f, f"{where}: {c} = {v}", "a value in [0, 1]")
        df["file"] = f.name
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    for c in METRIC_COLUMNS:
        out[c] = pd.to_numeric(out[c].replace("", float("nan")))
    out["is_paper_method"] = out["is_paper_method"] == "True"
    if not include_placeholders:
        out = out[out[list(METRIC_COLUMNS)].notna().any(axis=1)].reset_index(drop=True)
    return out
