"""Replicate the study: R simulated studies, the paper's estimators, the paper's table.

Each replication draws a new population, graph and assignment from its own seed
(``SeedSequence.spawn`` of the master seed), runs the study world to the collection date,
measures it as the study did (:mod:`sim.experiment`) and applies the paper's estimators
(:mod:`sim.estimate`). The first ``true_reps`` replications are also run as twins (the
mirror world with every arm flipped), which gives the model's true effect beside the
estimate. Replications run in a process pool; the table gathers, per outcome, the mean
estimate, the spread of the estimate across replications (what one study's noise is),
the mean of the per-replication SEs, the true effect, and the paper's numbers.
"""

from __future__ import annotations

import hashlib
import math
import pickle
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sim.params import Scenario
from sim.study import run_study
from sim.targets import TARGETS

__all__ = ["ROW_IDS", "Replication", "replicate", "run_replication", "summarize"]

#: Stable ids of the rows of reproduce.json (TARGETS.md outcomes and tertiles).
ROW_IDS = ("shared", "new_job", "new_job_in_scope", "any_view", "new_job_low",
           "new_job_medium", "new_job_high")
LATE_IDS = ("late_new_job", "late_new_job_in_scope", "late_new_job_low",
            "late_new_job_medium", "late_new_job_high")
COX_IDS = ("new_job_cox", "new_job_in_scope_cox")


@dataclass
class Replication:
    """One simulated study of a replicate run."""

    index: int
    spawn_key: list[int]  # position of its seed under the master SeedSequence
    estimates: pd.DataFrame  # study_estimates rows
    true: dict[str, float]  # true effects (pp) by row id; empty without a twin
    curves: pd.DataFrame  # cumulative new-job share by months since randomization, by arm
    dataset: pd.DataFrame | None  # the matched study dataset (kept for replication 0)


def run_replication(scenario: Scenario, seed: np.random.SeedSequence, index: int,
                    twin: bool, keep_dataset: bool) -> Replication:
    """One replication (top level, so a process pool can run it): :func:`run_study`."""
    res = run_study(scenario, seed, twin=twin, keep_dataset=keep_dataset)
    return Replication(index, list(seed.spawn_key), res.estimates, res.true, res.curves,
                       res.dataset)


def replicate(scenario: Scenario, replications: int, seed: int, workers: int = 2,
              true_reps: int = 4,
              progress: Callable[[int, int], None] | None = None,
              cache_dir: Path | None = None) -> list[Replication]:
    """Run ``replications`` studies from ``SeedSequence(seed).spawn(replications)``.

    With ``cache_dir``, each finished replication is stored there (written to a temporary
    file, then renamed) and a rerun with the same scenario, seed and twin settings loads
    it instead of running it again: an interrupted reproduce resumes.
    """
    seeds = np.random.SeedSequence(seed).spawn(replications)
    jobs = {i: (scenario, s, i, i < true_reps, i == 0) for i, s in enumerate(seeds)}
    done: dict[int, Replication] = {}
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(
            (scenario.to_toml() + f"|{seed}|{true_reps}").encode()).hexdigest()[:16]
        for i in jobs:
            f = cache_dir / f"{key}-{i:04d}.pkl"
            if f.exists():
                try:
                    done[i] = pickle.loads(f.read_bytes())
                except (pickle.UnpicklingError, EOFError, AttributeError, ValueError):
                    f.unlink()  # cut short by an interruption: run it again

    def keep(rep: Replication) -> None:
        done[rep.index] = rep
        if cache_dir is not None:
            f = cache_dir / f"{key}-{rep.index:04d}.pkl"
            tmp = f.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(rep))
            tmp.replace(f)
        if progress:
            progress(len(done), replications)

    if progress:
        progress(len(done), replications)
    todo = [j for i, j in jobs.items() if i not in done]
    if workers <= 1 or len(todo) <= 1:
        for j in todo:
            keep(run_replication(*j))
    else:
        with ProcessPoolExecutor(min(workers, len(todo))) as pool:
            futures = [pool.submit(run_replication, *j) for j in todo]
            for f in as_completed(futures):
                keep(f.result())
    return [done[i] for i in sorted(done)]


def summarize(reps: list[Replication]) -> pd.DataFrame:
    """The table: one row per outcome id (paper rows, LATE, Cox), paper beside model."""
    allest = pd.concat([r.estimates.assign(rep=r.index) for r in reps], ignore_index=True)
    rows = []
    for rid in (*ROW_IDS, *COX_IDS, *LATE_IDS):
        e = allest[allest["id"] == rid]
        if e.empty:
            continue
        base = rid.removeprefix("late_").removesuffix("_cox")
        tgt = TARGETS.get(rid) or (TARGETS.get(base) if rid.endswith("_cox") else None)
        trues = [r.true[base] for r in reps if base in r.true and not rid.startswith("late_")]
        row = {
            "id": rid,
            "estimator": str(e["estimator"].iloc[0]),
            "replications": len(e),
            "n": float(e["n"].mean()),
            "control_mean": float(e["control_mean"].mean()),
            "itt_pp": float(e["effect"].mean()),
            "itt_se": float(e["se"].mean()),
            "sim_sd": float(e["effect"].std(ddof=1)) if len(e) > 1 else float("nan"),
            "rel": float(e["rel"].mean()),
            "rel_se": float(e["rel_se"].mean()),
            "true_itt_pp": float(np.mean(trues)) if trues else float("nan"),
            "true_replications": len(trues),
        }
        if tgt is not None:
            lo, hi = tgt.ci95()
            row.update(
                paper_itt_pp=tgt.itt_pp, paper_se=tgt.se_pp,
                paper_control_mean=tgt.control_mean, paper_rel=tgt.rel,
                in_paper_ci=bool(lo <= row["itt_pp"] <= hi),
                control_within=abs(row["control_mean"] - tgt.control_mean),
            )
        rows.append(row)
    return pd.DataFrame(rows)


def checks(table: pd.DataFrame) -> dict[str, bool]:
    """The acceptance checks of the study issue, evaluated on a table."""
    t = table.set_index("id")

    def rel(i):
        return t.loc[i, "rel"] if i in t.index else math.nan

    paper_rows = [i for i in ROW_IDS if i in t.index]
    tert = ("new_job_low", "new_job_medium", "new_job_high")
    return {
        "every row's mean estimate in the paper's 95% CI": bool(
            all(t.loc[i, "in_paper_ci"] for i in paper_rows)),
        "control means within 1 pp (tertiles within 2 pp)": bool(all(
            t.loc[i, "control_within"] <= (2.0 if i in tert else 1.0) for i in paper_rows)),
        "relative new-job effect 5%-7%": bool(0.05 <= rel("new_job") <= 0.07),
        "low-tertile relative effect 9.5%-12.5%": bool(0.095 <= rel("new_job_low") <= 0.125),
        "low > medium > high (relative)": bool(
            rel("new_job_low") > rel("new_job_medium") > rel("new_job_high")),
        "spread of the new-job ITT within 1.5x of 0.452 pp": bool(
            0.452 / 1.5 <= t.loc["new_job", "sim_sd"] <= 0.452 * 1.5),
    }


def _fmt(v: float, nd: int = 2) -> str:
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{nd}f}"


def markdown_table(table: pd.DataFrame) -> str:
    """The reproduce table as Markdown (used by the report)."""
    head = ("| id | control mean sim / paper (%) | ITT sim (pp) | SD across reps | mean SE | "
            "true ITT | paper ITT (SE) | relative sim / paper | in paper 95% CI |")
    lines = [head, "|" + "---|" * 9]
    for _, r in table.iterrows():
        paper = r.get("paper_itt_pp")
        has_paper = paper is not None and isinstance(paper, float) and math.isfinite(paper)
        lines.append("| " + " | ".join([
            r["id"],
            f"{_fmt(r['control_mean'])} / {_fmt(r.get('paper_control_mean'))}",
            _fmt(r["itt_pp"], 3), _fmt(r["sim_sd"], 3), _fmt(r["itt_se"], 3),
            _fmt(r["true_itt_pp"], 3),
            f"{_fmt(paper, 3)} ({_fmt(r.get('paper_se'), 3)})" if has_paper else "",
            f"{_fmt(100 * r['rel'], 1)}% / "
            + (f"{_fmt(100 * r['paper_rel'], 1)}%" if has_paper and r.get("paper_rel")
               is not None and math.isfinite(r.get("paper_rel")) else ""),
            ("yes" if r.get("in_paper_ci") else "no") if has_paper else "",
        ]) + " |")
    return "\n".join(lines)


def write_outputs(out, table: pd.DataFrame, reps: list[Replication], manifest: dict) -> None:
    """reproduce.json, study.parquet, the figures and report.md into ``out``."""
    import json
    from pathlib import Path

    from sim import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {r["id"]: {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                      for k, v in r.items() if k != "id"} for r in table.to_dict("records")}
    res = {"manifest": manifest, "rows": rows, "checks": checks(table),
           "replications": [{"index": r.index, "spawn_key": r.spawn_key,
                             "estimates": r.estimates.to_dict("records"), "true": r.true}
                            for r in reps]}
    (out / "reproduce.json").write_text(json.dumps(res, indent=2, default=str))
    first = next(r for r in reps if r.dataset is not None)
    first.dataset.to_parquet(out / "study.parquet", index=False)
    curves = pd.concat([r.curves.assign(rep=r.index) for r in reps], ignore_index=True)
    plots.cumulative_new_jobs(curves).savefig(out / "cumulative_new_jobs.png", dpi=120)
    plots.tertile_effects(table).savefig(out / "tertile_effects.png", dpi=120)
    ck = checks(table)
    n_true = sum(1 for r in reps if r.true)
    report = [
        f"# Reproducing the study: {manifest.get('scenario', '')}",
        "",
        f"{len(reps)} simulated studies at the study's scale (master seed "
        f"{manifest.get('seed')}, commit {manifest.get('commit', 'unknown')}); the true "
        f"effect comes from {n_true} of them, run as twins. Estimates: linear "
        "probability models with strata fixed effects and covariates (robust SEs), "
        "Cox rows turned into pp, 2SLS for the LATE of sharing. 'SD across reps' is how "
        "much one study's estimate moves from sample to sample; compare it with the "
        "paper's SE.",
        "",
        markdown_table(table),
        "",
        "## Checks",
        "",
        *[f"- [{'x' if v else ' '}] {k}" for k, v in ck.items()],
        "",
        "## Figures",
        "",
        "![cumulative new jobs](cumulative_new_jobs.png)",
        "",
        "![tertile effects](tertile_effects.png)",
        "",
        "`study.parquet` holds one replication's matched study dataset (one row per "
        "learner, the columns the study had) for anyone to rerun their own estimators.",
    ]
    (out / "report.md").write_text("\n".join(report) + "\n")
