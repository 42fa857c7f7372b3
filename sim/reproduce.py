"""Replicate the study: R simulated studies, the paper's estimators, the paper's table.

Each replication draws a new population, graph and assignment from its own seed
(child ``i`` of ``SeedSequence(seed)``), runs the study world to the collection date,
measures it as the study did and applies the paper's estimators
(:func:`sim.study.run_study`). The first ``true_reps`` replications are also run as
twins (the mirror world with every arm flipped), which gives the model's true effect
beside the estimate. The table gathers, per outcome, the mean estimate, the spread of
the estimate across replications (what one study's noise is), the mean of the
per-replication SEs, the true effect, and the paper's numbers.

Replications are tasks of :mod:`sim.runner` (task ``r0000`` is replication 0), run on
a local process pool or a Dask cluster and written to a result folder, one file per
replication: its estimates (with the true effects), the twins' truth, the new-job curves
and, for replication 0, the matched study dataset. The folder of ``credsim reproduce``::

    <out>/reproduce.toml      the master seed (the folder's record)
    <out>/scenario.toml       the resolved scenario (a record too)
    <out>/manifest.json       provenance and one entry per session
    <out>/tasks/r0000.parquet one file per finished replication
    <out>/results.parquet     every replication's rows
    <out>/reproduce.json, study.parquet, figures, report.md   the outputs

Rerunning on the folder resumes: finished replications are read back, the missing ones
run (more replications reuse the ones done, since replication ``i``'s seed does not
depend on how many there are).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sim import defaults
from sim.params import Scenario
from sim.runner import (
    ESTIMATE_COLUMNS,
    Record,
    ResultStore,
    Task,
    TaskFn,
    open_executor,
    open_store,
    raise_failed,
    run_task,
    run_tasks,
    scenario_record,
    write_atomic,
)
from sim.targets import TARGETS

__all__ = [
    "ROW_IDS",
    "Replication",
    "default_out",
    "replicate",
    "replication_tasks",
    "summarize",
]

#: Stable ids of the rows of reproduce.json (TARGETS.md outcomes and tertiles).
ROW_IDS = (
    "shared",
    "new_job",
    "new_job_in_scope",
    "any_view",
    "new_job_low",
    "new_job_medium",
    "new_job_high",
)
LATE_IDS = (
    "late_new_job",
    "late_new_job_in_scope",
    "late_new_job_low",
    "late_new_job_medium",
    "late_new_job_high",
)
COX_IDS = ("new_job_cox", "new_job_in_scope_cox")

#: The columns of one replication's estimates (sim.estimate.STUDY_COLUMNS): its rows
#: (StudyResult.rows) without the true effect.
_STUDY_COLUMNS = tuple(c for c in ESTIMATE_COLUMNS if c != "true_effect")


def default_out(scenario: Scenario) -> Path:
    """The default result folder of ``credsim reproduce`` for ``scenario``."""
    from sim.store import safe_name

    return defaults.REPRODUCE_DIR / f"reproduce-{safe_name(scenario.meta.name)}"


@dataclass
class Replication:
    """One simulated study of a replicate run."""

    index: int
    spawn_key: list[int]  # position of its seed under the master SeedSequence
    estimates: pd.DataFrame  # study_estimates rows
    true: dict[str, float]  # true effects (pp) by row id; empty without a twin
    curves: pd.DataFrame  # cumulative new-job share by months since randomization, by arm
    dataset: pd.DataFrame | None  # the matched study dataset (kept for replication 0)


def replication_tasks(
    scenario: Scenario, replications: int, seed: int, true_reps: int = defaults.REPRODUCE_TRUE_REPS
) -> list[Task]:
    """The replications as tasks: ``r0000`` ... with the seeds of
    ``SeedSequence(seed).spawn(replications)``; the first ``true_reps`` with twins, the
    first one keeping its study dataset."""
    width = max(4, len(str(replications - 1)))
    return [
        Task(
            task_id=f"r{i:0{width}d}",
            overrides={},
            seed_entropy=int(seed),
            spawn_key=(i,),
            base=scenario,
            twin=i < true_reps,
            keep_dataset=i == 0,
            replication=i,
            index=i,
        )
        for i in range(replications)
    ]


def _records(scenario: Scenario, seed: int, source: str) -> list[Record]:
    return [
        Record("reproduce.toml", f"[reproduce]\nseed = {int(seed)}\n", f"--seed {seed}"),
        scenario_record("scenario.toml", scenario, source),
    ]


def _replication(store: ResultStore, task: Task) -> Replication:
    """A finished replication, read back from the store."""
    rows = store.read(task)
    tables = store.tables(task)
    est = rows.loc[:, list(_STUDY_COLUMNS)].copy()
    for c in ("id", "outcome", "group", "estimator"):
        est[c] = est[c].astype(str)
    est["n"] = est["n"].astype("int64")
    truth = tables.get("truth")
    true = (
        {}
        if truth is None or truth.empty
        else {str(k): float(v) for k, v in zip(truth["id"], truth["true_effect"], strict=True)}
    )
    return Replication(
        task.index, list(task.spawn_key), est, true, tables["curves"], tables.get("dataset")
    )


def replicate(
    scenario: Scenario,
    replications: int = defaults.REPRODUCE_REPLICATIONS,
    seed: int = defaults.REPRODUCE_SEED,
    *,
    true_reps: int = defaults.REPRODUCE_TRUE_REPS,
    out: str | Path | None = None,
    executor: Executor | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    task_fn: TaskFn = run_task,
    source: str | None = None,
    manifest: dict | None = None,
    session: dict | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Replication]:
    """Run ``replications`` studies from ``SeedSequence(seed)``; every one, in order.

    Args:
        out: the result folder (see the module docstring): created, or resumed when it
            holds this scenario and seed. Without it the replications go to a temporary
            folder, deleted at the end.
        executor: where the tasks run (any ``concurrent.futures.Executor``, e.g. a Dask
            cluster's); default a local pool of ``workers`` processes (one worker: this
            process).
        progress: ``progress(done, total)`` over all the replications, the ones found
            done first.
        task_fn: runs one replication (default :func:`sim.runner.run_task`).
        source, manifest, session: recorded in the folder (the scenario's file, the
            provenance written when the folder is started, this session's entry).

    Raises:
        sim.runner.StoreError: ``out`` holds another scenario or seed, or is in use.
        sim.runner.TaskFailed: replications failed (each is recorded in the folder; a
            rerun runs them again).
    """
    tasks = replication_tasks(scenario, replications, seed, true_reps)
    records = _records(scenario, seed, source or f"scenario {scenario.meta.name!r}")
    with contextlib.ExitStack() as stack:
        if out is None:
            out = stack.enter_context(tempfile.TemporaryDirectory(prefix="credsim-reproduce-"))
        store = stack.enter_context(open_store(out, "reproduced study", records, manifest))
        if executor is None:
            executor = stack.enter_context(open_executor(workers, in_process=True)).executor
        before = sum(store.done(t) for t in tasks)
        if before and log:
            log(f"{out}: {before} of {replications} replications already done")
        report = (
            None
            if progress is None
            else (lambda done, _todo: progress(before + done, replications))
        )
        run = run_tasks(tasks, store, executor, task_fn, progress=report, log=log)
        store.consolidate(tasks)
        store.record_session(
            {
                **(session or {}),
                "ran": run.ran,
                "already_done": run.already_done,
                "failed": len(run.failed),
                "wall_seconds": round(run.wall_seconds, 3),
            }
        )
        raise_failed(store, tasks, "replications")
        return [_replication(store, t) for t in tasks]


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
                paper_itt_pp=tgt.itt_pp,
                paper_se=tgt.se_pp,
                paper_control_mean=tgt.control_mean,
                paper_rel=tgt.rel,
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
            all(t.loc[i, "in_paper_ci"] for i in paper_rows)
        ),
        "control means within 1 pp (tertiles within 2 pp)": bool(
            all(t.loc[i, "control_within"] <= (2.0 if i in tert else 1.0) for i in paper_rows)
        ),
        "relative new-job effect 5%-7%": bool(0.05 <= rel("new_job") <= 0.07),
        "low-tertile relative effect 9.5%-12.5%": bool(0.095 <= rel("new_job_low") <= 0.125),
        "low > medium > high (relative)": bool(
            rel("new_job_low") > rel("new_job_medium") > rel("new_job_high")
        ),
        "spread of the new-job ITT within 1.5x of 0.452 pp": bool(
            0.452 / 1.5 <= t.loc["new_job", "sim_sd"] <= 0.452 * 1.5
        ),
    }


def _fmt(v: float, nd: int = 2) -> str:
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{nd}f}"


def markdown_table(table: pd.DataFrame) -> str:
    """The reproduce table as Markdown (used by the report)."""
    head = (
        "| id | control mean sim / paper (%) | ITT sim (pp) | SD across reps | mean SE | "
        "true ITT | paper ITT (SE) | relative sim / paper | in paper 95% CI |"
    )
    lines = [head, "|" + "---|" * 9]
    for _, r in table.iterrows():
        paper = r.get("paper_itt_pp")
        has_paper = paper is not None and isinstance(paper, float) and math.isfinite(paper)
        lines.append(
            "| "
            + " | ".join(
                [
                    r["id"],
                    f"{_fmt(r['control_mean'])} / {_fmt(r.get('paper_control_mean'))}",
                    _fmt(r["itt_pp"], 3),
                    _fmt(r["sim_sd"], 3),
                    _fmt(r["itt_se"], 3),
                    _fmt(r["true_itt_pp"], 3),
                    f"{_fmt(paper, 3)} ({_fmt(r.get('paper_se'), 3)})" if has_paper else "",
                    f"{_fmt(100 * r['rel'], 1)}% / "
                    + (
                        f"{_fmt(100 * r['paper_rel'], 1)}%"
                        if has_paper
                        and r.get("paper_rel") is not None
                        and math.isfinite(r.get("paper_rel"))
                        else ""
                    ),
                    ("yes" if r.get("in_paper_ci") else "no") if has_paper else "",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def write_outputs(out, table: pd.DataFrame, reps: list[Replication], manifest: dict) -> None:
    """reproduce.json, study.parquet, the figures and report.md into ``out`` (each file
    written atomically)."""
    import json

    from sim import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {
        r["id"]: {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in r.items()
            if k != "id"
        }
        for r in table.to_dict("records")
    }
    res = {
        "manifest": manifest,
        "rows": rows,
        "checks": checks(table),
        "replications": [
            {
                "index": r.index,
                "spawn_key": r.spawn_key,
                "estimates": r.estimates.to_dict("records"),
                "true": r.true,
            }
            for r in reps
        ],
    }
    write_atomic(out / "reproduce.json", json.dumps(res, indent=2, default=str))
    first = next(r for r in reps if r.dataset is not None)
    write_atomic(out / "study.parquet", lambda fh: first.dataset.to_parquet(fh, index=False))
    curves = pd.concat([r.curves.assign(rep=r.index) for r in reps], ignore_index=True)
    for name, fig in (
        ("cumulative_new_jobs.png", plots.cumulative_new_jobs(curves)),
        ("tertile_effects.png", plots.tertile_effects(table)),
    ):
        write_atomic(out / name, lambda fh, fig=fig: fig.savefig(fh, format="png", dpi=120))
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
    write_atomic(out / "report.md", "\n".join(report) + "\n")
