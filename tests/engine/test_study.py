"""`avatarbench study`: aggregation on synthetic records (hand-computed deltas) and one tiny end-to-end run."""

from __future__ import annotations

import csv
import json
import math

import pytest

from avatarbench.engine.sweep import Job
from avatarbench.results import study as st


def _claim(ablation, metric, sign, split="self_reenact"):
    return {"paper": "p", "ablation": ablation, "method_id": "m", "suite_split": split, "metric": metric,
            "paper_sign": sign, "paper_delta": None, "evidence": "own table"}


def _rec(variant, seed, **metrics):
    return {"method": "m", "subject": "s", "world": "full", "split": "self_reenact", "variant": variant, "seed": seed,
            **{k: metrics.get(k) for k in ("psnr", "ssim", "lpips", "chamfer_mm")}}


def test_paper_claims_aggregation_hand_computed():
    full = {0: (30.0, 0.90, 0.10), 1: (30.4, 0.91, 0.12), 2: (29.8, 0.92, 0.11)}
    abl = {0: (29.0, 0.80, 0.11), 1: (29.6, 0.82, 0.10), 2: (29.1, 0.81, 0.12)}
    recs = [_rec("full", s, psnr=p, ssim=q, lpips=l) for s, (p, q, l) in full.items()]
    recs += [_rec("a", s, psnr=p, ssim=q, lpips=l) for s, (p, q, l) in abl.items()]
    recs.append(_rec("b", 0, psnr=1.0))  # one seed only
    claims = [_claim("a", "psnr", 1), _claim("a", "lpips", 1), _claim("a", "ssim", -1), _claim("b", "psnr", 1),
              _claim("c", "psnr", 1)]
    rows = {(r["ablation"], r["metric"]): r for r in st.aggregate_paper_claims(claims, recs)}
    r = rows[("a", "psnr")]
    # deltas ablated - full: -1.0, -0.8, -0.7 -> mean -0.8333; std (ddof 1) 0.152753
    assert r["our_delta"] == pytest.approx(-2.5 / 3)
    assert r["seed_noise"] == pytest.approx(math.sqrt(0.07 / 3), rel=1e-9)  # sum sq dev = 0.046667
    assert r["n_seeds"] == 3 and r["our_sign"] == 1 and r["verdict"] == "reproduced"
    r = rows[("a", "lpips")]
    # deltas 0.01, -0.02, 0.01 -> mean 0, noise sqrt(0.0006 / 2)
    assert r["our_delta"] == pytest.approx(0.0, abs=1e-12)
    assert r["seed_noise"] == pytest.approx(math.sqrt(0.0003))
    assert r["verdict"] == "not reproduced" and r["our_sign"] == 0
    r = rows[("a", "ssim")]
    # full better by 0.10, 0.09, 0.11 while the paper says the ablation is better
    assert r["our_delta"] == pytest.approx(-0.10) and r["seed_noise"] == pytest.approx(0.01)
    assert r["our_sign"] == 1 and r["verdict"] == "inverted"
    assert rows[("b", "psnr")]["verdict"] == "insufficient seeds"  # 1 seed has a full partner (seed 0)
    assert rows[("b", "psnr")]["our_delta"] == pytest.approx(1.0 - 30.0)
    assert rows[("c", "psnr")]["verdict"] == "missing" and rows[("c", "psnr")]["n_seeds"] == 0
    md = st.paper_claims_markdown(list(rows.values()))
    assert "| p | a | self_reenact | psnr | +1 |  | -0.83 +- 0.15 (3) | reproduced |  |" in md
    assert "inverted 1" in md and "missing 1" in md


def test_inert_component_is_its_own_verdict():
    """An ablation whose component never acted trained identically: 'inert', not 'not reproduced'."""
    recs = [_rec("full", s, psnr=30.0 + s) for s in (0, 1)] + [_rec("a", s, psnr=30.0 + s) for s in (0, 1)]
    recs += [_rec("b", s, psnr=29.0 + s) for s in (0, 1)]
    notes = {("m", "a"): "inert: position_loss = 0 in full", ("m", "b"): "acted: density_control = 3 in full"}
    rows = {r["ablation"]: r for r in st.aggregate_paper_claims([_claim("a", "psnr", 1), _claim("b", "psnr", 1)],
                                                                recs, notes)}
    assert rows["a"]["verdict"] == "inert" and rows["a"]["our_delta"] == 0.0
    assert rows["b"]["verdict"] == "reproduced" and rows["b"]["component_activity"].startswith("acted")
    assert "| inert | inert: position_loss = 0 in full |" in st.paper_claims_markdown(list(rows.values()))


def test_verdict_rule_edges():
    assert st.verdict(1, [0.3, 0.1])[3] == "reproduced"          # mean 0.2 > std 0.1414
    assert st.verdict(1, [0.3, -0.1])[3] == "not reproduced"     # mean 0.1 < std 0.2828
    assert st.verdict(-1, [0.3, 0.1])[3] == "inverted"
    assert st.verdict(0, [0.3, 0.1])[3] == "not reproduced"
    assert st.verdict(1, [])[3] == "missing"


def test_phenomena_aggregation_hand_computed(tmp_path):
    recs = []
    for seed, (c, f) in enumerate(((25.0, 23.0), (26.0, 22.0))):
        recs.append({**_rec("full", seed, psnr=c, chamfer_mm=2.0 + seed), "world": "clean"})
        recs.append({**_rec("full", seed, psnr=f), "world": "full"})
    recs.append({**_rec("a", 0, psnr=99.0), "world": "clean"})  # ablation runs are not part of the matrix
    rows = st.aggregate_phenomena(recs)
    cell = {(r["world"], r["metric"]): r for r in rows}
    assert cell[("clean", "psnr")]["mean"] == 25.5 and cell[("clean", "psnr")]["std"] == pytest.approx(math.sqrt(0.5))
    assert cell[("full", "psnr")]["mean"] == 22.5 and cell[("full", "psnr")]["n"] == 2
    assert cell[("clean", "chamfer_mm")]["mean"] == 2.5 and ("full", "chamfer_mm") not in cell
    md = st.phenomena_markdown(rows)
    assert "| m | 25.50 +- 0.71 | 22.50 +- 0.71 |" in md
    png = st.phenomena_figure(rows, tmp_path / "f.png")
    assert png.is_file() and png.stat().st_size > 1000


def test_plans_and_resume(tmp_path):
    claims = [_claim("no_teeth", "psnr", 1), _claim("no_teeth", "lpips", 1),
              _claim("no_teeth", "psnr", 1, split="novel_view")]
    for c in claims:
        c["method_id"] = "gaussian_avatars"
    jobs = st.plan_paper_claims(claims, preset="bench", seeds=[0, 1])
    keys = {(j.variant, j.split, j.sets[-1]) for j in jobs}
    assert len(jobs) == 8 and len(keys) == 8 and all(j.subject == "synth_head_a_full" for j in jobs)
    ph = st.plan_phenomena(["flame_gaussians", "lbs_gaussians"], preset="bench", seeds=[0, 1], splits=["self_reenact"])
    assert {j.subject for j in ph if j.method == "lbs_gaussians"} == {
        "synth_body_a_clean", "synth_body_a_tracking_noise", "synth_body_a_garment_dynamics", "synth_body_a_long_hair",
        "synth_body_a_full"}
    assert len(ph) == (6 + 5) * 2
    # resume: a done job of an earlier manifest is carried over, the others stay pending
    from avatarbench.engine.sweep import _save_manifest

    done = Job(**{**jobs[0].__dict__, "status": "done", "results": "x.json"})
    _save_manifest(tmp_path / "m.json", "m", [done, jobs[1]], tmp_path)
    again = st.resume_jobs(st.plan_paper_claims(claims, preset="bench", seeds=[0, 1]), tmp_path / "m.json")
    assert again[0].status == "done" and again[0].results == "x.json" and all(j.status == "pending" for j in again[1:])


FAST = ["method.train.iterations=3", "protocol.max_frames=2", "engine.num_threads=1", "data.synthetic_preset=tiny"]


def test_phenomena_study_end_to_end(tmp_path):
    """The baseline on the tiny clean and full worlds, 2 seeds; a second call resumes (nothing re-run)."""
    out = tmp_path / "studies"
    kw = dict(root=tmp_path / "runs", out=out, preset="smoke", seeds=[0, 1], methods=["flame_gaussians"],
              worlds=["clean", "full"], sets=FAST, executor="inline", echo=lambda *a: None)
    written = st.run_study("phenomena", **kw)
    rows = list(csv.DictReader(open(written["csv"])))
    worlds = {r["world"] for r in rows}
    assert worlds == {"clean", "full"}
    psnr = {r["world"]: r for r in rows if r["metric"] == "psnr"}
    assert all(int(r["n"]) == 2 and float(r["mean"]) > 5 for r in psnr.values())
    assert written["png"].is_file() and "### psnr" in written["md"].read_text()
    jobs = json.loads((tmp_path / "runs" / "sweeps" / "study_phenomena_smoke.json").read_text())["jobs"]
    assert len(jobs) == 4 and all(j["status"] == "done" for j in jobs)
    assert {j["subject"] for j in jobs} == {"synth_head_a_clean", "synth_head_a_full"}
    msgs = []
    st.run_study("phenomena", **{**kw, "echo": msgs.append})
    assert "4 jobs, 4 already done" in msgs[0]
    # a manifest rewritten by an invocation with other --seeds still finds the finished runs on disk
    st.run_study("phenomena", **{**kw, "seeds": [1], "run": False})
    manifest = tmp_path / "runs" / "sweeps" / "study_phenomena_smoke.json"
    manifest.unlink()
    msgs = []
    written = st.run_study("phenomena", **{**kw, "echo": msgs.append, "run": False})
    assert "4 jobs, 4 already done" in msgs[0]
    assert all(int(r["n"]) == 2 for r in csv.DictReader(open(written["csv"])))
    # another training configuration in the same folder layout is not taken for a finished run
    other = st.plan_phenomena(["flame_gaussians"], preset="smoke", seeds=[0], splits=["self_reenact"],
                              sets=FAST + ["method.train.iterations=7"], worlds=["clean"])[0]
    assert st.finished_on_disk(other, tmp_path / "runs") is None


def test_table_shows_study_tables(tmp_path, capsys):
    from avatarbench.cli.main import main

    studies = tmp_path / "studies"
    studies.mkdir()
    (studies / "paper_claims.md").write_text("# Paper claims\n\n| x |\n")
    (studies / "phenomena.md").write_text("# Per-phenomenon matrix\n")
    (studies / "bench").mkdir()
    (studies / "bench" / "paper_claims.md").write_text("# Paper claims at the bench tier\n")
    try:
        main(["table", "--root", str(tmp_path / "empty"), "--studies", str(studies)])
    except SystemExit as e:
        assert e.code in (0, None)
    out = capsys.readouterr().out
    assert "# Paper claims" in out and "# Per-phenomenon matrix" in out
    assert "# Paper claims at the bench tier" in out and str(studies / "bench" / "paper_claims.md") in out


def test_paper_claims_restricted_to_named_ablations(tmp_path):
    """``--ablations``: only those claims' jobs are planned; an unknown name is a one-line error."""
    from avatarbench.errors import ConfigError

    kw = dict(root=tmp_path / "runs", out=tmp_path / "out", preset="bench", seeds=[0, 1],
              methods=["gaussian_avatars"], run=False, echo=lambda *_: None)
    st.run_study("paper-claims", ablations=["no_density_control"], **kw)
    jobs = json.loads((tmp_path / "out" / "study_paper_claims_bench_jobs.json").read_text())
    # full + the ablation, on each of the claim's two splits, two seeds
    assert sorted({(j["variant"], j["split"]) for j in jobs}) == [
        ("full", "novel_view"), ("full", "self_reenact"),
        ("no_density_control", "novel_view"), ("no_density_control", "self_reenact")]
    assert len(jobs) == 8
    rows = list(csv.DictReader((tmp_path / "out" / "paper_claims.csv").open()))
    assert rows and {r["ablation"] for r in rows} == {"no_density_control"}
    with pytest.raises(ConfigError, match="no claim for ablation.*flame_init of gaussian_avatars"):
        st.run_study("paper-claims", ablations=["flame_init"], **kw)
