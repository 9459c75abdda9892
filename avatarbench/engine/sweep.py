"""``avatarbench sweep``: many runs, one job per (method, subject, split, variant).

Jobs go through submitit: ``local`` (default; subprocesses on this machine, ``parallel`` at a
time), ``slurm`` (a cluster; one job each), or ``inline`` (this process, for debugging). Every
job writes into the same results store; jobs of the same trained model (different splits) share
its run folder, and a file lock makes the first one train while the others wait and then only
evaluate. The sweep's manifest (``<root>/sweeps/<name>.json``) records each job's status, error
and the command that re-runs it alone; ``--retry-failed`` re-runs only the failed ones.
"""

from __future__ import annotations

import json
import shlex
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from avatarbench.errors import ConfigError


@dataclass
class Job:
    method: str
    subject: str
    split: str
    variant: str = "full"
    preset: str = "smoke"
    sets: list[str] = field(default_factory=list)
    status: str = "pending"  # pending | running | done | failed
    error: str | None = None
    job_id: str | None = None
    results: str | None = None

    @property
    def ablation(self) -> str | None:
        return None if self.variant == "full" else self.variant

    def command(self, root: Path) -> str:
        parts = ["avatarbench", "run", "-m", self.method, "-s", self.split, "--subject", self.subject,
                 "--preset", self.preset]
        if self.ablation:
            parts += ["-a", self.ablation]
        for s in self.sets:
            parts += ["--set", s]
        parts += ["--set", f"output.root={root}"]
        return " ".join(shlex.quote(p) for p in parts)


def plan_jobs(method: str, *, ablations: str | None, splits: list[str], subjects: list[str], preset: str,
              sets: list[str] | None = None, include_full: bool = True) -> list[Job]:
    """Expand a sweep request. ``ablations``: None, ``all`` or a comma list of variant names."""
    from avatarbench.engine.registry import get_spec

    spec = get_spec(method)
    if ablations in (None, ""):
        variants = ["full"]
    elif ablations == "all":
        variants = (["full"] if include_full else []) + list(spec.ablations)
    else:
        names = [a.strip() for a in ablations.split(",") if a.strip()]
        unknown = [a for a in names if a not in spec.ablations and a != "full"]
        if unknown:
            raise ConfigError(f"unknown ablation(s) {', '.join(unknown)} for {method} "
                              f"(available: {', '.join(spec.ablations)})")
        variants = (["full"] if include_full and "full" not in names else []) + names
    return [Job(method, subj, split, v, preset, list(sets or [])) for subj in subjects for v in variants
            for split in splits]


def run_job(job: dict, root: str, progress: bool = False) -> dict:
    """The function each submitit job runs (module level, so it pickles). ``progress``: the
    training / scoring bars go to the job's stderr log, which the sweep shows while it runs."""
    from avatarbench.engine.config import RunRequest
    from avatarbench.engine.run import execute

    j = Job(**job)
    req = RunRequest(method=j.method, split=j.split, preset=j.preset, ablation=j.ablation,
                     sets=tuple(j.sets) + (f"output.root={root}",), subject=j.subject)
    try:
        outcome = execute(req, None, echo=lambda *_: None, progress=progress)
    except Exception as e:  # reported in the manifest as one line; the traceback stays in the job log
        traceback.print_exc()
        return {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}
    return {"results": str(outcome.eval_dir / "results.json"), "metrics": outcome.results.get("metrics", {})}


def _save_manifest(path: Path, name: str, jobs: list[Job], root: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"name": name, "root": str(root),
            "jobs": [{**asdict(j), "command": j.command(root)} for j in jobs]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def load_manifest(path: Path) -> tuple[str, Path, list[Job]]:
    data = json.loads(Path(path).read_text())
    jobs = [Job(**{k: v for k, v in j.items() if k != "command"}) for j in data["jobs"]]
    return data["name"], Path(data["root"]), jobs


def run_sweep(jobs: list[Job], root: Path, *, name: str, executor: str = "local", parallel: int = 1,
              slurm: dict | None = None, echo=print) -> tuple[Path, list[Job]]:
    """Run (or re-run) ``jobs``; jobs already ``done`` are skipped. Returns the manifest path and jobs."""
    root = Path(root)
    manifest = root / "sweeps" / f"{name}.json"
    todo = [j for j in jobs if j.status != "done"]
    _save_manifest(manifest, name, jobs, root)
    if executor == "inline":
        for i, j in enumerate(todo):
            echo(f"[{i + 1}/{len(todo)}] {j.command(root)}")
            _finish(j, lambda j=j: run_job(asdict(j), str(root), progress=True))
            _save_manifest(manifest, name, jobs, root)
            echo(f"[{j.status}] {j.command(root)}" + (f"\n    {j.error}" if j.error else ""))
        return manifest, jobs

    import submitit

    ex = submitit.AutoExecutor(folder=str(root / "sweeps" / f"{name}_logs"),
                               cluster="slurm" if executor == "slurm" else "local")
    params = {"timeout_min": int((slurm or {}).get("timeout_min", 24 * 60))}
    if executor == "slurm":
        params.update({f"slurm_{k}": v for k, v in (slurm or {}).items() if k != "timeout_min"})
    ex.update_parameters(**params)
    from tqdm.auto import tqdm

    pending = list(todo)
    running: list[tuple[Job, object]] = []
    limit = len(todo) if executor == "slurm" else max(1, parallel)
    # one bar over jobs (on a terminal); its text shows the running jobs' own progress, read
    # from their stderr logs; finished jobs are reported above the bar
    bar = tqdm(total=len(todo), desc=f"sweep {name}", unit="job", disable=None, dynamic_ncols=True)
    try:
        while pending or running:
            while pending and len(running) < limit:
                j = pending.pop(0)
                sub = ex.submit(run_job, asdict(j), str(root), True)
                j.status, j.job_id = "running", str(sub.job_id)
                running.append((j, sub))
                _save_manifest(manifest, name, jobs, root)
            still = []
            for j, sub in running:
                if sub.done():
                    _finish(j, sub.result)
                    with tqdm.external_write_mode():
                        echo(f"[{j.status}] {j.command(root)}" + (f"\n    {j.error}" if j.error else ""))
                    bar.update(1)
                    _save_manifest(manifest, name, jobs, root)
                else:
                    still.append((j, sub))
            running = still
            if running:
                bar.set_postfix_str(" | ".join(f"{j.variant}/{j.split}: {job_progress(sub)}" for j, sub in running),
                                    refresh=True)
                time.sleep(0.5)
    finally:
        bar.close()
    return manifest, jobs


def last_progress_line(path: Path, max_bytes: int = 4096) -> str:
    """The newest line a job wrote to ``path`` (tqdm redraws with carriage returns), with the
    bar graphic dropped: ``train flame_gaussians:  40% 8/20 [00:06<00:10, 1.19it/s]``."""
    import re

    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            tail = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    parts = [p.strip() for p in re.split(r"[\r\n]", tail) if p.strip()]
    if not parts:
        return ""
    return re.sub(r"\s+", " ", re.sub(r"\|[^|]*\|", " ", parts[-1])).strip()


def job_progress(sub) -> str:
    """What a submitit job is doing now (its newest stderr line), or 'starting'."""
    try:
        line = last_progress_line(Path(sub.paths.stderr))
    except Exception:  # noqa: BLE001 - a job without log paths (or not started yet)
        line = ""
    return (line[:70] + "...") if len(line) > 73 else (line or "starting")


def _finish(job: Job, get_result) -> None:
    try:
        res = get_result()
    except Exception as e:  # the job process itself died (killed, out of memory, ...)
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        errs = [ln for ln in lines if "Error" in ln or "error" in ln]
        job.status, job.error = "failed", (errs[-1] if errs else (lines[0] if lines else type(e).__name__))[:500]
        return
    if res.get("error"):
        job.status, job.error = "failed", res["error"][:500]
    else:
        job.status, job.error, job.results = "done", None, res.get("results")
