"""Replicate the study: R simulated studies, the paper's estimators, the paper's table.

Each replication draws a new population, graph and assignment from its own seed
(child ``i`` of ``SeedSequence(seed)``), runs the study world to the collection date,
measures it as the study did and applies the paper's estimators
(:func:`sim.study.run_study`). The first ``true_reps`` replications are also run as
twins (the mirror world with every arm flipped), which gives the model's true effect
beside the estimate. The table (:func:`summarize`) gathers, per estimate, the mean
estimate with its Student-t interval over the replications, one study's noise two ways
(the mean of the studies' own robust SEs, and the spread of the estimate across
replications), the true effect with its spread across the replications' worlds, the
paper's number and interval, and for each 2SLS LATE its first-stage F beside the true
LATE. Rows say what they are (:data:`ROLES`): the calibration's fitted targets, or
out-of-sample predictions (the employability tertiles, and subgroups the paper gives no
numbers for). :func:`checks` says whether the study is reproduced (TARGETS.md).

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
from collections.abc import Callable, Iterable
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
    "COX_IDS",
    "FITTED_IDS",
    "LATE_IDS",
    "PREDICTED_IDS",
    "ROLES",
    "ROW_IDS",
    "SUBGROUP_IDS",
    "Replication",
    "TextTable",
    "checks",
    "default_out",
    "markdown_table",
    "replicate",
    "replication_tasks",
    "summarize",
    "t_interval",
    "text_tables",
    "write_outputs",
]

#: The paper's rows the calibration fits, effect and control mean (MODEL.md: the study's
#: control means and overall effects).
FITTED_IDS = ("shared", "new_job", "new_job_in_scope", "any_view")
#: The paper's rows the calibration leaves out (T5, the employability tertiles): the
#: model's out-of-sample predictions, compared with the paper.
PREDICTED_IDS = ("new_job_low", "new_job_medium", "new_job_high")
#: Stable ids of the paper's rows of reproduce.json (TARGETS.md outcomes and tertiles).
ROW_IDS = (*FITTED_IDS, *PREDICTED_IDS)
#: The new-job ITT in the subgroups the study's public summary names
#: (:data:`sim.estimate.SUBGROUP_LABELS`, repeated so that this module does not import the
#: estimators; a test checks that they agree). Predictions; TARGETS.md has no numbers.
SUBGROUP_IDS = (
    "new_job_no_college",
    "new_job_college",
    "new_job_no_experience",
    "new_job_experience",
    "new_job_developed",
    "new_job_developing",
)
LATE_IDS = (
    "late_new_job",
    "late_new_job_in_scope",
    "late_new_job_low",
    "late_new_job_medium",
    "late_new_job_high",
)
COX_IDS = ("new_job_cox", "new_job_in_scope_cox")
#: What each row of the table is (its ``role`` column).
ROLES = {
    **dict.fromkeys(FITTED_IDS, "fitted target"),
    **dict.fromkeys(PREDICTED_IDS, "prediction"),
    **dict.fromkeys(SUBGROUP_IDS, "prediction, no paper number"),
    **dict.fromkeys(COX_IDS, "fitted target, Cox"),
    **dict.fromkeys(LATE_IDS, "LATE, no paper number"),
}
#: First-stage F below which the table flags a 2SLS row as weakly identified
#: (:data:`sim.estimate.WEAK_IV_F`; a test checks that they agree).
WEAK_IV_F = 10.0

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
    true: dict[str, float]  # true effects (pp; LATE ids: true LATE) by id; empty without twin
    curves: pd.DataFrame  # cumulative new-job share by months since randomization, by arm
    dataset: pd.DataFrame | None  # the matched study dataset (kept for replication 0)
    truth: pd.DataFrame | None = None  # the twins' rows (StudyResult.truth); None without

    @property
    def true_control(self) -> dict[str, float]:
        """The twins' mean outcome without the nudge (%, mean ``Y(0)``) by id."""
        t = self.truth
        if t is None or t.empty:
            return {}
        return {str(k): float(v) for k, v in zip(t["id"], t["control_mean"], strict=True)}


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
    # reindex: a file written before a column was added has NaN in it
    est = rows.reindex(columns=list(_STUDY_COLUMNS))
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
        task.index,
        list(task.spawn_key),
        est,
        true,
        tables["curves"],
        tables.get("dataset"),
        None if truth is None or truth.empty else truth,
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


def t_interval(values: Iterable[float], level: float = 0.95) -> tuple[float, float, float]:
    """The mean of ``values`` (non-finite ones left out) and its Student-t interval.

    ``mean -+ t(1/2 + level/2, R - 1) * sd / sqrt(R)`` over the ``R`` finite values: how
    well ``R`` replications pin down the model's expected estimate (not the interval of
    one study). The bounds are NaN with fewer than two values.
    """
    from scipy import stats

    v = np.asarray(list(values), dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if len(v) < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1)) * float(v.std(ddof=1))
    return m, m - half / math.sqrt(len(v)), m + half / math.sqrt(len(v))


def _mean(v: Iterable[float]) -> float:
    a = np.asarray(list(v), dtype=float)
    a = a[np.isfinite(a)]
    return float(a.mean()) if len(a) else math.nan


def _sd(v: Iterable[float]) -> float:
    a = np.asarray(list(v), dtype=float)
    a = a[np.isfinite(a)]
    return float(a.std(ddof=1)) if len(a) > 1 else math.nan


def summarize(reps: list[Replication]) -> pd.DataFrame:
    """The table: one row per estimate id, the paper beside the model.

    Rows, in order: the paper's rows (:data:`ROW_IDS`: fitted targets, then the tertile
    predictions), the subgroups (:data:`SUBGROUP_IDS`), the Cox rows, the LATEs; the
    ``role`` column says which (:data:`ROLES`). Columns:

    * the estimate over replications: ``replications`` (with a finite estimate), ``n``
      (mean sample), ``control_mean`` (%), ``itt_pp`` (mean estimate, pp; the LATE for a
      LATE row), ``rel`` (mean relative effect, fraction of the control mean),
      ``mean_lo``/``mean_hi`` (Student-t 95% interval of the mean estimate, R - 1 df);
    * one study's noise, two ways: ``itt_se`` (mean of the studies' own robust SEs, pp;
      ``rel_se`` likewise) and ``sim_sd`` (SD of the estimate across replications);
    * the truth, from the twin replications: ``true_itt_pp`` (mean true effect, pp; for a
      LATE row the true LATE, true ITT on the outcome over true ITT on sharing, per
      replication), ``true_sd`` (its SD across the replications' worlds: how much the
      truth differs between simulated populations, not sampling noise),
      ``true_control_mean`` (mean ``Y(0)``, %), ``true_rel`` (mean of true effect / mean
      ``Y(0)``), ``true_replications``;
    * 2SLS rows: ``first_stage_f`` (mean first-stage F), ``weak_iv_reps`` (replications
      with F below :data:`WEAK_IV_F`), ``weak_iv`` (mean F below it);
    * rows with a paper number (TARGETS.md; a Cox row has its outcome's): ``paper_itt_pp``,
      ``paper_se``, ``paper_lo``/``paper_hi`` (its 95% interval), ``paper_control_mean``,
      ``paper_rel``, ``in_paper_ci`` (the mean estimate inside it), ``control_within``
      (|control mean - paper's|, pp).
    """
    allest = pd.concat([r.estimates.assign(rep=r.index) for r in reps], ignore_index=True)
    rows = []
    for rid in (*ROW_IDS, *SUBGROUP_IDS, *COX_IDS, *LATE_IDS):
        e = allest[allest["id"] == rid]
        if e.empty:
            continue
        base = rid.removesuffix("_cox")
        tgt = TARGETS.get(base)
        effect = e["effect"].to_numpy(dtype=float)
        mean, lo, hi = t_interval(effect)
        twins = [r for r in reps if base in r.true]
        true = np.array([r.true[base] for r in twins], dtype=float)
        true_c = np.array([r.true_control.get(base, math.nan) for r in twins], dtype=float)
        true_rel = np.divide(true, true_c, out=np.full(len(true), math.nan), where=true_c != 0)
        row = {
            "id": rid,
            "role": ROLES[rid],
            "estimator": str(e["estimator"].iloc[0]),
            "replications": int(np.isfinite(effect).sum()),
            "n": float(e["n"].mean()),
            "control_mean": _mean(e["control_mean"]),
            "itt_pp": mean,
            "rel": _mean(e["rel"]),
            "mean_lo": lo,
            "mean_hi": hi,
            "itt_se": _mean(e["se"]),
            "rel_se": _mean(e["rel_se"]),
            "sim_sd": _sd(effect),
            "true_replications": int(np.isfinite(true).sum()),
            "true_itt_pp": _mean(true),
            "true_sd": _sd(true),
            "true_control_mean": _mean(true_c),
            "true_rel": _mean(true_rel),
        }
        if rid in LATE_IDS:
            f = e["first_stage_f"] if "first_stage_f" in e else pd.Series(math.nan, index=e.index)
            f = f.to_numpy(dtype=float)
            mean_f = _mean(f)
            row.update(
                first_stage_f=mean_f,
                weak_iv_reps=int((f[np.isfinite(f)] < WEAK_IV_F).sum()),
                weak_iv=bool(mean_f < WEAK_IV_F) if math.isfinite(mean_f) else None,
            )
        if tgt is not None:
            p_lo, p_hi = tgt.ci95()
            row.update(
                paper_itt_pp=tgt.itt_pp,
                paper_se=tgt.se_pp,
                paper_lo=p_lo,
                paper_hi=p_hi,
                paper_control_mean=tgt.control_mean,
                paper_rel=tgt.rel if tgt.rel is not None else math.nan,
                in_paper_ci=bool(p_lo <= mean <= p_hi),
                control_within=abs(row["control_mean"] - tgt.control_mean),
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _tag(rid: str) -> str:
    return "fitted target" if rid in FITTED_IDS else "prediction"


def checks(table: pd.DataFrame) -> dict[str, bool]:
    """What "reproduced" means (TARGETS.md), evaluated on a table.

    Each check's name starts with what it tests: ``(fitted target)``, a number the
    calibration matches, ``(prediction)``, one it does not see, or ``(design)``, a
    consequence of the study's size. Every paper row's mean estimate must lie inside the
    paper's 95% interval, one check per row.
    """
    t = table.set_index("id")

    def get(i: str, col: str) -> float:
        if i not in t.index or col not in t.columns:
            return math.nan
        v = t.loc[i, col]
        return float(v) if v is not None and pd.notna(v) else math.nan

    def in_ci(i: str) -> bool:
        return bool(i in t.index and "in_paper_ci" in t.columns and t.loc[i, "in_paper_ci"])

    def controls_within(ids: tuple[str, ...], pp: float) -> bool:
        present = [i for i in ids if i in t.index]
        return bool(present) and all(get(i, "control_within") <= pp for i in present)

    out = {f"({_tag(i)}) {i}: mean estimate inside the paper's 95% CI": in_ci(i) for i in ROW_IDS}
    out |= {
        "(fitted target) control means within 1 pp": controls_within(FITTED_IDS, 1.0),
        "(prediction) tertile control means within 2 pp": controls_within(PREDICTED_IDS, 2.0),
        "(fitted target) relative new-job effect 5%-7% (the summary's 6%)": bool(
            0.05 <= get("new_job", "rel") <= 0.07
        ),
        "(prediction) low-tertile relative effect 9.5%-12.5% (the summary's 11%)": bool(
            0.095 <= get("new_job_low", "rel") <= 0.125
        ),
        "(prediction) low > medium > high (relative)": bool(
            get("new_job_low", "rel") > get("new_job_medium", "rel") > get("new_job_high", "rel")
        ),
        "(design) spread of the new-job ITT across replications within 1.5x of the paper's "
        "SE 0.452 pp": bool(0.452 / 1.5 <= get("new_job", "sim_sd") <= 0.452 * 1.5),
    }
    return out


# ---- the table as text ------------------------------------------------------------------


@dataclass(frozen=True)
class TextTable:
    """One table of the report as text cells, for Markdown (:func:`markdown_table`) and
    the terminal (``credsim reproduce``): a title, column names, sections of rows (each
    under a label saying what its rows are; ``""``: no label) and notes."""

    title: str
    columns: tuple[str, ...]
    sections: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]
    notes: tuple[str, ...] = ()

    @property
    def rows(self) -> tuple[tuple[str, ...], ...]:
        """Every row, sections in order."""
        return tuple(r for _, rows in self.sections for r in rows)


def _fmt(v: object, nd: int = 2) -> str:
    if v is None or isinstance(v, str):
        return ""
    x = float(v)  # type: ignore[arg-type]
    return f"{x:.{nd}f}" if math.isfinite(x) else ""


def _pp_rel(pp: object, rel: object, nd: int = 3) -> str:
    """``1.006 (+5.8%)``: an effect in pp beside its relative effect."""
    a, r = _fmt(pp, nd), _fmt(None if rel is None else 100 * float(rel), 1)  # type: ignore[arg-type]
    if not a:
        return ""
    return f"{a} ({'+' if not r.startswith('-') else ''}{r}%)" if r else a


def _interval(lo: object, hi: object, nd: int = 2) -> str:
    a, b = _fmt(lo, nd), _fmt(hi, nd)
    return f"[{a}, {b}]" if a and b else ""


def _pair(a: object, b: object, nd: int = 3) -> str:
    x, y = _fmt(a, nd), _fmt(b, nd)
    return f"{x} / {y}" if x or y else ""


#: The sections of the ITT table: a label and the ids under it.
_ITT_SECTIONS = (
    ("fitted targets", FITTED_IDS),
    ("predicted: tertiles", PREDICTED_IDS),
    ("predicted: subgroups", SUBGROUP_IDS),
    ("fitted targets, Cox", COX_IDS),
)


def _itt_cells(r: dict) -> tuple[str, ...]:
    has = pd.notna(r.get("paper_itt_pp", math.nan))
    return (
        r["id"],
        _pair(r["control_mean"], r.get("paper_control_mean"), 2)
        if has
        else _fmt(r["control_mean"]),
        _pp_rel(r["itt_pp"], r["rel"], 2),
        _interval(r["mean_lo"], r["mean_hi"]),
        _pair(r["itt_se"], r["sim_sd"], 2),
        _pp_rel(r["true_itt_pp"], r["true_rel"], 2),
        _fmt(r["true_sd"], 2),
        _pp_rel(r.get("paper_itt_pp"), r.get("paper_rel")) if has else "",
        _interval(r.get("paper_lo"), r.get("paper_hi")) if has else "",
        ("yes" if r.get("in_paper_ci") else "no") if has else "",
    )


def _late_cells(r: dict) -> tuple[str, ...]:
    f = _fmt(r.get("first_stage_f"), 1)
    weak = r.get("weak_iv") is True
    return (
        r["id"],
        _fmt(r["n"], 0),
        f + (" (weak)" if weak else "") if f else "",
        f"{int(r.get('weak_iv_reps', 0) or 0)}/{int(r['replications'])}",
        _fmt(r["itt_pp"], 2),
        _interval(r["mean_lo"], r["mean_hi"]),
        _pair(r["itt_se"], r["sim_sd"], 2),
        _fmt(r["true_itt_pp"], 2),
        _fmt(r["true_sd"], 2),
    )


def text_tables(table: pd.DataFrame) -> list[TextTable]:
    """The report's tables as text: the ITTs (fitted targets, tertile and subgroup
    predictions, Cox) and the LATEs, each with the notes that say how to read it."""
    recs = {r["id"]: r for r in table.to_dict("records")}
    reps = int(max((r["replications"] for r in recs.values()), default=0))
    itt = tuple(
        (label, rows)
        for label, ids in _ITT_SECTIONS
        if (rows := tuple(_itt_cells(recs[i]) for i in ids if i in recs))
    )
    late = tuple(_late_cells(recs[i]) for i in LATE_IDS if i in recs)
    t_note = (
        f"t 95% CI: the mean estimate's Student-t interval over the {reps} replications "
        f"(t with {max(reps - 1, 0)} df): how well they pin down the model's expected "
        "estimate."
    )
    out = [
        TextTable(
            "ITT of the nudge (pp; relative effect in % of the control mean)",
            (
                "row",
                "control % sim / paper",
                "estimate pp (rel)",
                "t 95% CI of mean",
                "SE in study / SD across reps",
                "true pp (rel)",
                "true SD across worlds",
                "paper pp (rel)",
                "paper 95% CI",
                "in paper CI",
            ),
            itt,
            (
                "fitted targets: numbers the calibration matches (effect and control mean; "
                "the Cox rows estimate the same effects with the paper's own estimator). "
                "predicted: out-of-sample predictions, the calibration never sees them: the "
                "employability tertiles (the paper's T5) and the subgroups of the study's "
                "public summary (no college degree / college degree, no experience / some, "
                "developed / developing country), for which TARGETS.md gives no paper "
                "numbers, so their paper columns are empty.",
                "estimate: mean over replications of one study's estimate. " + t_note,
                "SE in study: the mean robust SE that one study reports; SD across reps: how "
                "far one study's estimate moves from one simulated world to another. Compare "
                "both with the paper's SE.",
                "true: the twins' effect (each learner under both arms of the same world), "
                "mean over the twin replications; its SD across worlds is how much the true "
                "effect differs between simulated populations, not the sampling noise of "
                "one study. rel: mean over replications of each study's effect over its control "
                "mean (estimate), of each world's true effect over the twins' mean outcome "
                "without the nudge (true).",
            ),
        ),
        TextTable(
            "LATE of sharing on the outcome (2SLS, assignment instruments sharing; pp)",
            (
                "row",
                "n",
                "first-stage F",
                f"reps F < {WEAK_IV_F:g}",
                "LATE pp",
                "t 95% CI of mean",
                "SE in study / SD across reps",
                "true LATE pp",
                "true SD across worlds",
            ),
            (("", late),) if late else (),
            (
                "first-stage F: the robust Wald F of assignment on sharing (one instrument: "
                f"t^2), mean over replications; '(weak)' when it is below {WEAK_IV_F:g}: the "
                "2SLS estimate is then biased towards OLS and its SE and interval are not to "
                f"be trusted. reps F < {WEAK_IV_F:g}: replications whose own first stage is "
                "weak.",
                "true LATE: the twins' true ITT on the outcome over their true ITT on "
                "sharing, per replication, then averaged (the compliers' effect of sharing if "
                "the nudge acts only through sharing). The paper reports no LATE here.",
            ),
        ),
    ]
    return [t for t in out if t.sections]


def markdown_table(table: pd.DataFrame) -> str:
    """The reproduce tables as Markdown, each with its notes (used by the report)."""
    parts = []
    for tt in text_tables(table):
        lines = [
            f"**{tt.title}**",
            "",
            "| " + " | ".join(tt.columns) + " |",
            "|" + "---|" * len(tt.columns),
        ]
        for label, rows in tt.sections:
            if label:
                lines.append(f"| *{label}* |" + " |" * (len(tt.columns) - 1))
            lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines += [
            "",
            *(f"- {n}" for n in tt.notes),
        ]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


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
        "Cox rows turned into pp, 2SLS for the LATE of sharing. The calibration fits the "
        "overall rows; the tertile and subgroup rows are the model's out-of-sample "
        "predictions.",
        "",
        markdown_table(table),
        "",
        "## Checks",
        "",
        "What 'reproduced' means (TARGETS.md). '(fitted target)': a number the calibration "
        "matches; '(prediction)': one it never sees; '(design)': a consequence of the "
        "study's size.",
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
