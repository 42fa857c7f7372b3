"""Running a sweep: its tasks through the runner into its result folder, then the tables.

The result folder (:mod:`sim.runner.store`)::

    <out>/sweep.toml          the sweep file, as given (the folder's record)
    <out>/base.toml           the resolved base scenario (overrides applied), every key
    <out>/manifest.json       provenance (sim.store.manifest), the master seed, sessions
    <out>/tasks/<id>.parquet  one file per finished task, written atomically
    <out>/results.parquet     every task's rows, in task order (rewritten at the end)
    <out>/summary.parquet     per point and estimate id: mean, sd, mean SE, true effect

A task file holds one row per estimate (long form): task_id, point, replication, one
column per swept key, seed_entropy, spawn_key (e.g. ``"[5]"``), status (``ok`` or
``error``), error, traceback, warnings, wall_seconds, then id, outcome, group,
estimator, effect, se, n, control_mean, rel, rel_se and true_effect (pp; NaN without a
twin). A failed task is one row with its parameters, the error and the traceback. The
file also keeps the study's ``truth`` and ``curves`` tables
(:func:`sim.runner.read_tables`).

Rerunning on the same folder resumes: a task whose file is readable, matches the task
and has status ``ok`` is skipped; missing, unreadable and failed tasks run again. A
folder recorded for another sweep (different file content or base scenario) is refused.
One process at a time may work on a folder (an advisory lock, released if it dies).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sim import defaults
from sim.runner import (
    Record,
    StoreError,
    Task,
    TaskFn,
    open_store,
    run_task,
    run_tasks,
    scenario_record,
    write_parquet,
)
from sim.runner.store import ResultStore
from sim.sweep.design import DESIGN_STREAM, expand
from sim.sweep.spec import SweepError, SweepSpec

__all__ = ["SweepOutcome", "consolidate", "default_out", "run_sweep", "summarize"]


def default_out(spec: SweepSpec) -> Path:
    """The default result folder of a sweep: ``results/sweeps/<name>``."""
    return defaults.SWEEPS_DIR / spec.name


def _records(spec: SweepSpec) -> list[Record]:
    return [
        Record("sweep.toml", spec.text, spec.source),
        scenario_record("base.toml", spec.base, str(spec.base_path)),
    ]


def _sweep_manifest(
    spec: SweepSpec, timestamp: str | None, command: Sequence[str] | None
) -> dict[str, Any]:
    from sim import store

    info = {
        "name": spec.name,
        "description": spec.description,
        "file": spec.source,
        "base": spec.base_ref,
        "base_file": str(spec.base_path),
        "master_seed": spec.seed,
        "replications": spec.replications,
        "twin": spec.twin,
        "common_seeds": spec.common_seeds,
        "n_points": spec.n_points,
        "n_tasks": spec.n_tasks,
        "overrides": spec.overrides,
        "parameters": {
            p.key: {k: v for k, v in dataclasses.asdict(p).items() if k != "key"}
            for p in spec.parameters
        },
        "sample": (
            {
                "method": spec.sample_method,
                "n": spec.sample_n,
                "scramble_spawn_key": [DESIGN_STREAM],
            }
            if spec.sample_method
            else None
        ),
    }
    return store.manifest(
        spec.base, spec.seed, {"sweep": info, "sessions": []}, timestamp=timestamp, command=command
    )


@dataclass
class SweepOutcome:
    """What one call of :func:`run_sweep` did."""

    out: Path
    n_tasks: int
    already_done: int  # tasks found finished in the folder
    ran: int  # tasks run this time
    failed: list[str]  # task ids whose status is "error" in the final table
    wall_seconds: float

    @property
    def ok(self) -> bool:
        """Every task of the sweep finished without error."""
        return not self.failed


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    executor: Executor,
    task_fn: TaskFn = run_task,
    *,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
    timestamp: str | None = None,
    command: Sequence[str] | None = None,
    executor_info: str | None = None,
) -> SweepOutcome:
    """Run the tasks of ``spec`` missing from ``out`` on ``executor``; consolidate.

    Parameters
    ----------
    spec:
        A validated sweep (:func:`sim.sweep.load_sweep`).
    out:
        The result folder (created, or resumed; see the module docstring).
    executor:
        Any :class:`concurrent.futures.Executor`: a ``ProcessPoolExecutor``, or a Dask
        cluster's ``Client.get_executor()`` (:func:`sim.runner.open_executor`).
    task_fn:
        ``task -> estimates`` (a top-level function, so it pickles); default
        :func:`sim.runner.run_task`.
    progress:
        Called as ``progress(done, total)`` over the tasks run this time (first with 0).
    log:
        Called with one-line messages (what is resumed, what failed).
    timestamp, command, executor_info:
        Recorded in the manifest (the caller owns the clock and argv).

    Each finished task is written at once (atomically); an interrupted call leaves only
    complete task files, and the next call runs the rest.

    Raises
    ------
    SweepError
        ``out`` belongs to another sweep, is not a sweep folder, or is in use.
    """
    out = Path(out)
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    tasks = expand(spec)
    try:
        with open_store(
            out, "sweep", _records(spec), _sweep_manifest(spec, timestamp, command)
        ) as store:
            done_before = sum(store.done(t) for t in tasks)
            if done_before:
                say(
                    f"{out}: {done_before} of {len(tasks)} tasks already done; running the "
                    f"other {len(tasks) - done_before}"
                )
            run = run_tasks(tasks, store, executor, task_fn, progress=progress, log=say)
            results, _summary = _consolidate(spec, store, tasks)
            failed = sorted(set(results.loc[results["status"] != "ok", "task_id"]))
            wall = time.perf_counter() - t0
            store.record_session(
                {
                    "timestamp": timestamp,
                    "command": list(command or []),
                    "executor": executor_info,
                    "ran": run.ran,
                    "already_done": run.already_done,
                    "failed": len(failed),
                    "wall_seconds": round(wall, 3),
                }
            )
    except StoreError as err:  # raised on opening only: nothing was run
        raise SweepError(str(err)) from None
    return SweepOutcome(out, len(tasks), run.already_done, run.ran, failed, wall)


def _consolidate(
    spec: SweepSpec, store: ResultStore, tasks: Sequence[Task]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    results = store.consolidate(tasks)
    summary = summarize(results, spec.keys)
    write_parquet(summary, store.out / "summary.parquet")
    return results, summary


def consolidate(
    spec: SweepSpec, out: str | Path, tasks: Sequence[Task] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gather the task files into ``results.parquet`` and ``summary.parquet``.

    One row set per task, in task order; a task without a valid file is left out (and
    run again by the next :func:`run_sweep`). Returns (results, summary).
    """
    tasks = expand(spec) if tasks is None else tasks
    return _consolidate(spec, ResultStore(Path(out), "sweep"), tasks)


def summarize(results: pd.DataFrame, keys: Sequence[str] = ()) -> pd.DataFrame:
    """Per point and estimate id, over the replications that finished.

    Columns: point, the swept ``keys``, id, estimator, n_replications (finished tasks
    with this id), n_estimated (non-NaN effects), effect_mean, effect_sd (across
    replications, ddof 1: NaN with one), se_mean, rel_mean, control_mean,
    true_effect_mean (NaN without twins). Effects are in percentage points.
    """
    keys = list(keys)
    ok = results[(results["status"] == "ok") & results["id"].notna()]
    cols = [
        "point",
        *keys,
        "id",
        "estimator",
        "n_replications",
        "n_estimated",
        "effect_mean",
        "effect_sd",
        "se_mean",
        "rel_mean",
        "control_mean",
        "true_effect_mean",
    ]
    if ok.empty:
        return pd.DataFrame(columns=cols)
    g = ok.groupby(["point", "id"], sort=False)
    table = g.agg(
        estimator=("estimator", "first"),
        n_replications=("task_id", "nunique"),
        n_estimated=("effect", "count"),
        effect_mean=("effect", "mean"),
        effect_sd=("effect", "std"),
        se_mean=("se", "mean"),
        rel_mean=("rel", "mean"),
        control_mean=("control_mean", "mean"),
        true_effect_mean=("true_effect", "mean"),
    ).reset_index()
    params = ok.groupby("point", sort=False)[keys].first().reset_index() if keys else None
    if params is not None:
        table = table.merge(params, on="point", how="left")
    return table.sort_values("point", kind="stable")[cols].reset_index(drop=True)
