"""Inert ablations are marked in `avatarbench table --ablations`: a variant whose removed component
(spec.ablation_components) never acted in the full run (results.json train.activity)."""

from __future__ import annotations

import json

from avatarbench.results.inert import ablation_components, inert_notes
from avatarbench.results.table import build_table


def _record(variant, activity, psnr, subject="s1", preset="smoke"):
    return {"method": "gaussian_avatars", "variant": variant, "preset": preset, "subject": subject,
            "split": "self_reenact", "metrics": {"psnr": psnr}, "train": {"iterations": 600, "activity": activity}}


def test_gaussian_avatars_names_a_counter_for_its_component_ablations():
    comps = ablation_components("gaussian_avatars")
    assert comps["no_position_loss"] == "position_loss" and comps["no_prune_guard"] == "guarded"
    assert comps["no_density_control"] == "density_control" and "views_6" not in comps
    from avatarbench.methods.gaussian_avatars.method import ACTIVITY_KEYS

    assert set(comps.values()) <= set(ACTIVITY_KEYS)


def test_inert_notes_by_hand():
    comps = {"no_position_loss": "position_loss", "no_scaling_loss": "scaling_loss", "no_teeth": "teeth_visible"}
    recs = [_record("full", {"position_loss": 0, "scaling_loss": 599}, 25.0),
            _record("full", {"position_loss": 3, "scaling_loss": 500}, 25.0, subject="s2"),
            _record("no_position_loss", {"position_loss": 0}, 25.0),
            _record("no_scaling_loss", {}, 24.0),
            _record("no_scaling_loss", {}, 24.0, subject="s2"),
            _record("no_teeth", {}, 25.0),  # the full runs recorded no teeth counter: unknown
            _record("views_6", {}, 23.0)]
    notes = inert_notes(recs, comps)
    assert notes == {"no_position_loss": "inert: position_loss = 0 in full",
                     "no_scaling_loss": "acted: scaling_loss = 500..599 in full"}
    # the variant also run on s2, where the hinge acted: no longer inert everywhere
    notes = inert_notes(recs + [_record("no_position_loss", {}, 25.0, subject="s2")], comps)
    assert notes["no_position_loss"] == "acted: position_loss = 0..3 in full"


def test_table_marks_the_inert_variant(tmp_path):
    recs = [_record("full", {"position_loss": 0, "scaling_loss": 599}, 25.28),
            _record("no_position_loss", {"position_loss": 0, "scaling_loss": 599}, 25.28),
            _record("no_scaling_loss", {"position_loss": 0, "scaling_loss": 0}, 24.10)]
    for r in recs:
        d = tmp_path / r["subject"] / f"gaussian_avatars+{r['variant']}" / "smoke" / "eval" / "self_reenact"
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(r))
    text, files = build_table(tmp_path, ablations_of="gaussian_avatars", out_dir=tmp_path / "tables")
    rows = {line.split("|")[1].strip().split(" (")[0]: line for line in text.splitlines() if line.startswith("|")}
    assert "inert: position_loss = 0 in full" in rows["no_position_loss"]
    assert "acted: scaling_loss = 599 in full" in rows["no_scaling_loss"]
    assert "inert" not in rows["full"].split("|")[-2]
