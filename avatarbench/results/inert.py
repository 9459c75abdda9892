"""Inert ablations: a variant whose removed component never acted in the full run.

A method records in ``results.json`` ``train.activity`` how often each regulariser and
density-control rule acted (e.g. GaussianAvatars' ``position_loss``: steps on which the position
hinge was active). Its YAML names, under ``spec.ablation_components``, the counter of the
component each ablation removes. A variant is *inert* on a (subject, preset) when that counter is
0 in the full run there: its numbers can only differ from the full method's by noise, so the
table must not present it as a finding.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from avatarbench.results.store import find_results


def ablation_components(method: str) -> dict[str, str]:
    """ablation name -> activity counter, from ``spec.ablation_components`` of the method's YAML."""
    from omegaconf import OmegaConf

    from avatarbench.engine.registry import get_spec

    node = OmegaConf.load(get_spec(method).config_file).get("spec", {}) or {}
    comps = node.get("ablation_components", {}) or {}
    return {str(k): str(v) for k, v in comps.items()}


def inert_notes(records: list[dict], components: dict[str, str]) -> dict[str, str]:
    """variant -> note, for every variant with a named component and a full run to compare with.

    Args:
        records: results.json dicts of one method (``variant``, ``subject``, ``preset``,
            ``train.activity``).
        components: :func:`ablation_components`.
    Returns:
        ``"inert: <counter> = 0 in full"`` when the counter is 0 in the full run of every
        (subject, preset) the variant was run on, else ``"acted: <counter> = <n> in full"`` (or
        ``<min>..<max>`` over several runs); variants without a full run that recorded the counter
        are left out.
    """
    full: dict[tuple, int] = {}
    for r in records:
        act = (r.get("train") or {}).get("activity") or {}
        if r.get("variant", "full") == "full":
            for key, n in act.items():
                full[(r.get("subject"), r.get("preset"), key)] = int(n)
    notes: dict[str, str] = {}
    for variant in sorted({r.get("variant") for r in records} - {"full", None}):
        key = components.get(variant)
        if key is None:
            continue
        runs = {(r.get("subject"), r.get("preset")) for r in records if r.get("variant") == variant}
        counts = [full[(s, p, key)] for s, p in runs if (s, p, key) in full]
        if len(counts) != len(runs) or not counts:
            continue
        lo, hi = min(counts), max(counts)
        notes[variant] = (f"inert: {key} = 0 in full" if hi == 0 else
                          f"acted: {key} = {hi} in full" if lo == hi else f"acted: {key} = {lo}..{hi} in full")
    return notes


def inert_column(labels: list[str], root: Path, method: str) -> list[str] | None:
    """The ``inert`` column for an ablation table whose rows are labelled ``"<variant> (<config>)"``
    (:func:`avatarbench.results.table.ablation_table`); None when no variant has a note."""
    records = [r for r in find_results(root) if r.get("method") == method]
    notes = inert_notes(records, ablation_components(method))
    if not notes:
        return None
    return [notes.get(str(label).split(" (")[0], "") for label in labels]
